// Package testledger is the protected service of jitgrant's tests:
// bank.v1.Ledger, declared by hand over wrapperspb messages so that tests
// need no generated code. Every handler answers with the ID of the grant it
// was called with (verifier.GrantFromContext); the resource of Refund,
// Transfer and Deposit is the request's "value" field.
package testledger

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/verifier"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The service's methods.
const (
	GetBalance = "/bank.v1.Ledger/GetBalance"
	Refund     = "/bank.v1.Ledger/Refund"
	Transfer   = "/bank.v1.Ledger/Transfer"
	History    = "/bank.v1.Ledger/History" // server stream
	Deposit    = "/bank.v1.Ledger/Deposit" // client stream
)

// ResourceFields is the verifier configuration of the service.
func ResourceFields() map[string]string {
	return map[string]string{Refund: "value", Transfer: "value", Deposit: "value"}
}

func unary(full string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: full[strings.LastIndexByte(full, '/')+1:],
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) { return grantReply(ctx), nil }
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: full}, h)
		},
	}
}

func grantReply(ctx context.Context) *wrapperspb.StringValue {
	if g, ok := verifier.GrantFromContext(ctx); ok {
		return wrapperspb.String(g.ID)
	}
	return wrapperspb.String("")
}

// ServiceDesc describes bank.v1.Ledger; register it with
// grpc.Server.RegisterService(ServiceDesc(), nil).
func ServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "bank.v1.Ledger",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{unary(GetBalance), unary(Refund), unary(Transfer)},
		Streams: []grpc.StreamDesc{
			{StreamName: "History", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.RecvMsg(new(wrapperspb.StringValue)); err != nil {
					return err
				}
				for range 2 {
					if err := ss.SendMsg(grantReply(ss.Context())); err != nil {
						return err
					}
				}
				return nil
			}},
			{StreamName: "Deposit", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				for n := 0; ; n++ {
					if err := ss.RecvMsg(new(wrapperspb.StringValue)); err != nil {
						if n > 0 && errors.Is(err, io.EOF) {
							return ss.SendMsg(wrapperspb.String("ok"))
						}
						return err
					}
				}
			}},
		},
	}
}

// Call makes a unary call of method with resource and returns the grant ID
// the handler saw.
func Call(cc grpc.ClientConnInterface, method, resource string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, method, wrapperspb.String(resource), out)
	return out.GetValue(), err
}

// StreamDesc describes one of the service's streams for a client.
func StreamDesc(method string) *grpc.StreamDesc {
	name := method[strings.LastIndexByte(method, '/')+1:]
	return &grpc.StreamDesc{StreamName: name, ServerStreams: method == History, ClientStreams: method == Deposit}
}
