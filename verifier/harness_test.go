package verifier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The test service, bank.v1.Ledger, is declared by hand over wrapperspb
// messages so that the tests need no generated code. Every handler answers
// with the ID of the grant it was called with; the resource of Refund,
// Transfer and Deposit is the request's "value".
const (
	mGetBalance = "/bank.v1.Ledger/GetBalance"
	mRefund     = "/bank.v1.Ledger/Refund"
	mTransfer   = "/bank.v1.Ledger/Transfer"
	mHistory    = "/bank.v1.Ledger/History" // server stream
	mDeposit    = "/bank.v1.Ledger/Deposit" // client stream
	mOther      = "/ops.v1.Admin/Restart"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	serverID = spiffeid.RequireFromPath(td, "/ledger")
	clientID = spiffeid.RequireFromPath(td, "/workload/payments")
)

func unaryHandler(fullMethod string) grpc.MethodDesc {
	_, name := splitMethod(fullMethod)
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) { return grantReply(ctx), nil }
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: fullMethod}, h)
		},
	}
}

func grantReply(ctx context.Context) *wrapperspb.StringValue {
	g, ok := verifier.GrantFromContext(ctx)
	if !ok {
		return wrapperspb.String("")
	}
	return wrapperspb.String(g.ID)
}

func splitMethod(full string) (string, string) {
	i := bytes.LastIndexByte([]byte(full), '/')
	return full[1:i], full[i+1:]
}

var ledgerDesc = grpc.ServiceDesc{
	ServiceName: "bank.v1.Ledger",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{unaryHandler(mGetBalance), unaryHandler(mRefund), unaryHandler(mTransfer)},
	Streams: []grpc.StreamDesc{
		{StreamName: "History", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
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
			n := 0
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err != nil {
					if n > 0 && errors.Is(err, io.EOF) {
						return ss.SendMsg(wrapperspb.String("ok"))
					}
					return err
				}
				n++
			}
		}},
	},
}

var adminDesc = grpc.ServiceDesc{
	ServiceName: "ops.v1.Admin",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{unaryHandler(mOther)},
}

// env is one protected test service on loopback, with its CA and clock.
type env struct {
	t     *testing.T
	ca    *ca.CA
	clock *fakeclock.Clock
	v     *verifier.Verifier
	addr  string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newCA(t testing.TB, domain spiffeid.TrustDomain, clock func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.Generate(ca.Config{TrustDomain: domain, Clock: clock})
	if err != nil {
		t.Fatalf("ca.Generate: %v", err)
	}
	return c
}

// newEnv starts a protected server. mutate may adjust the verifier's config,
// and extra server options are added after the verifier's.
func newEnv(t *testing.T, mutate func(*verifier.Config), extra ...grpc.ServerOption) *env {
	t.Helper()
	// The fake clock starts at the real time: the client side (go-spiffe's
	// credentials) checks the server's certificate at the real time.
	clock := fakeclock.New(time.Now())
	e := &env{t: t, clock: clock, logs: &syncBuffer{}}
	e.ca = newCA(t, td, clock.Now)
	cfg := verifier.Config{
		SVIDSource:     e.mint(serverID, time.Hour, nil),
		BundleSource:   e.ca.Bundle(),
		ResourceFields: map[string]string{mRefund: "value", mTransfer: "value", mDeposit: "value"},
		Clock:          clock.Now,
		Logger:         slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := verifier.New(cfg)
	if err != nil {
		t.Fatalf("verifier.New: %v", err)
	}
	e.v = v
	srv := grpc.NewServer(append(v.ServerOptions(), extra...)...)
	srv.RegisterService(&ledgerDesc, nil)
	srv.RegisterService(&adminDesc, nil)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return e
}

// mint returns an SVID for id from the env's CA; g nil means identity only.
func (e *env) mint(id spiffeid.ID, ttl time.Duration, g *grant.Grant) *x509svid.SVID {
	e.t.Helper()
	svid, err := e.ca.Mint(ca.Request{ID: id, TTL: ttl, Grant: g})
	if err != nil {
		e.t.Fatalf("Mint: %v", err)
	}
	return svid
}

// dial connects to the env's server presenting svid, verifying the server's
// ID against the env's CA.
func (e *env) dial(svid *x509svid.SVID) *grpc.ClientConn {
	e.t.Helper()
	creds := verifier.ClientCredentials(svid, e.ca.Bundle(), tlsconfig.AuthorizeID(serverID))
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// call makes a unary call and returns the grant ID the handler saw.
func call(cc *grpc.ClientConn, method, resource string) (string, error) {
	out := new(wrapperspb.StringValue)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cc.Invoke(ctx, method, wrapperspb.String(resource), out)
	return out.GetValue(), err
}

func scopes(methods ...string) []grant.Scope {
	var s []grant.Scope
	for _, m := range methods {
		s = append(s, grant.Scope{Method: m})
	}
	return s
}

func caRequest(id spiffeid.ID, g *grant.Grant) ca.Request {
	return ca.Request{ID: id, TTL: 5 * time.Minute, Grant: g}
}

func mustID(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
