package verifier_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The test service is internal/testledger's bank.v1.Ledger, plus
// ops.v1.Admin, a second service for the "another service" cases.
const (
	mGetBalance = testledger.GetBalance
	mRefund     = testledger.Refund
	mTransfer   = testledger.Transfer
	mHistory    = testledger.History
	mDeposit    = testledger.Deposit
	mOther      = "/ops.v1.Admin/Restart"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	serverID = spiffeid.RequireFromPath(td, "/ledger")
	clientID = spiffeid.RequireFromPath(td, "/workload/payments")
)

// adminDesc is ops.v1.Admin: Restart answers like the ledger's methods.
func adminDesc() *grpc.ServiceDesc {
	restart := testledger.ServiceDesc().Methods[0]
	restart.MethodName = "Restart"
	h := restart.Handler
	restart.Handler = func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		if icpt == nil {
			return h(srv, ctx, dec, nil)
		}
		return h(srv, ctx, dec, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return icpt(ctx, req, &grpc.UnaryServerInfo{FullMethod: mOther}, handler)
		})
	}
	return &grpc.ServiceDesc{ServiceName: "ops.v1.Admin", HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{restart}}
}

// nest.v1.Nest: methods whose requests are pb.ReviewResponse, so that a
// resource sits at a nested path ("request.id"), and Who, which answers with
// the caller's identity.
const (
	mNestGet = "/nest.v1.Nest/Get" // unary, resource "request.id"
	mNestPut = "/nest.v1.Nest/Put" // client stream, resource "request.id"
	mNestBad = "/nest.v1.Nest/Bad" // unary, resource field path unreadable
	mNestWho = "/nest.v1.Nest/Who" // unary, an identity method
)

// nestFields is the resource configuration of nest.v1.Nest.
func nestFields() map[string]string {
	return map[string]string{mNestGet: "request.id", mNestPut: "request.id", mNestBad: "note.id"}
}

// nestReply answers with the grant ID the handler saw, or "id:" and the
// caller's identity when there is no grant.
func nestReply(ctx context.Context) *wrapperspb.StringValue {
	if g, ok := verifier.GrantFromContext(ctx); ok {
		return wrapperspb.String(g.ID)
	}
	if id, ok := verifier.IdentityFromContext(ctx); ok {
		return wrapperspb.String("id:" + id.String())
	}
	return wrapperspb.String("")
}

func nestDesc() *grpc.ServiceDesc {
	unary := func(full string) grpc.MethodDesc {
		return grpc.MethodDesc{
			MethodName: full[strings.LastIndexByte(full, '/')+1:],
			Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(pb.ReviewResponse)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) { return nestReply(ctx), nil }
				return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: full}, h)
			},
		}
	}
	return &grpc.ServiceDesc{
		ServiceName: "nest.v1.Nest",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{unary(mNestGet), unary(mNestBad), unary(mNestWho)},
		Streams: []grpc.StreamDesc{{StreamName: "Put", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				if err := ss.RecvMsg(new(pb.ReviewResponse)); err != nil {
					if errors.Is(err, io.EOF) {
						return ss.SendMsg(nestReply(ss.Context()))
					}
					return err
				}
			}
		}}},
	}
}

// nestCall calls a unary method of nest.v1.Nest with request.id = resource
// (no request at all when resource is "-") and returns the reply.
func nestCall(cc *grpc.ClientConn, method, resource string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, method, nestRequest(resource), out)
	return out.GetValue(), err
}

// nestPut sends one message per resource on nest.v1.Nest/Put and returns
// the reply.
func nestPut(cc *grpc.ClientConn, resources ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Put", ClientStreams: true}, mNestPut)
	if err != nil {
		return "", err
	}
	for _, r := range resources {
		if err := s.SendMsg(nestRequest(r)); err != nil {
			break // the server ended the stream; RecvMsg tells why
		}
	}
	s.CloseSend()
	out := new(wrapperspb.StringValue)
	err = s.RecvMsg(out)
	return out.GetValue(), err
}

func nestRequest(resource string) *pb.ReviewResponse {
	if resource == "-" {
		return &pb.ReviewResponse{}
	}
	return &pb.ReviewResponse{Request: &pb.AccessRequest{Id: resource}}
}

// env is one protected test service on loopback, with its CA and clock.
type env struct {
	t     *testing.T
	ca    *ca.CA
	clock *fakeclock.Clock
	v     *verifier.Verifier
	addr  string
	logs  *syncbuf.Buffer
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
	e := &env{t: t, clock: clock, logs: &syncbuf.Buffer{}}
	e.ca = newCA(t, td, clock.Now)
	cfg := verifier.Config{
		SVIDSource:     e.mint(serverID, time.Hour, nil),
		BundleSource:   e.ca.Bundle(),
		ResourceFields: withNest(testledger.ResourceFields()),
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
	srv.RegisterService(testledger.ServiceDesc(), nil)
	srv.RegisterService(adminDesc(), nil)
	srv.RegisterService(nestDesc(), nil)
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

func withNest(fields map[string]string) map[string]string {
	for m, f := range nestFields() {
		fields[m] = f
	}
	return fields
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
	return testledger.Call(cc, method, resource)
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
