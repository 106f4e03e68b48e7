package verifier_test

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// benchServers starts two servers of the test service on loopback, both on
// the real clock: the baseline protected by go-spiffe's own mTLS credentials
// with AuthorizeAny, and one protected by the verifier. It returns their
// addresses and a client SVID holding a grant for GetBalance.
func benchServers(b *testing.B) (baseline, jitgrant string, client *x509svid.SVID, bundle *x509bundle.Bundle) {
	b.Helper()
	rt := newCA(b, td, time.Now)
	srvSVID, err := rt.Mint(caRequest(serverID, nil))
	if err != nil {
		b.Fatal(err)
	}
	client, err = rt.Mint(ca.Request{ID: clientID, TTL: time.Hour, Grant: &grant.Grant{ID: "bench", Scopes: scopes(mGetBalance)}})
	if err != nil {
		b.Fatal(err)
	}
	start := func(opts ...grpc.ServerOption) string {
		srv := grpc.NewServer(opts...)
		srv.RegisterService(testledger.ServiceDesc(), nil)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(lis)
		b.Cleanup(srv.Stop)
		return lis.Addr().String()
	}
	baseline = start(grpc.Creds(grpccredentials.MTLSServerCredentials(srvSVID, rt.Bundle(), tlsconfig.AuthorizeAny())))
	v, err := verifier.New(verifier.Config{
		SVIDSource:   srvSVID,
		BundleSource: rt.Bundle(),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	jitgrant = start(v.ServerOptions()...)
	return baseline, jitgrant, client, rt.Bundle()
}

func dialBench(b *testing.B, addr string, svid *x509svid.SVID, bundle *x509bundle.Bundle) *grpc.ClientConn {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(svid, bundle, tlsconfig.AuthorizeID(serverID))))
	if err != nil {
		b.Fatal(err)
	}
	return cc
}

// BenchmarkUnaryRPC measures a no-op unary RPC on one open loopback mTLS
// connection, behind go-spiffe's credentials (baseline) and behind the
// verifier (jitgrant).
func BenchmarkUnaryRPC(b *testing.B) {
	baseline, jitgrant, client, bundle := benchServers(b)
	for _, bc := range []struct{ name, addr string }{{"baseline", baseline}, {"jitgrant", jitgrant}} {
		b.Run(bc.name, func(b *testing.B) {
			cc := dialBench(b, bc.addr, client, bundle)
			defer cc.Close()
			in, out := wrapperspb.String(""), new(wrapperspb.StringValue)
			if err := cc.Invoke(b.Context(), mGetBalance, in, out); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := cc.Invoke(b.Context(), mGetBalance, in, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake measures a new mTLS connection plus one RPC.
func BenchmarkHandshake(b *testing.B) {
	baseline, jitgrant, client, bundle := benchServers(b)
	for _, bc := range []struct{ name, addr string }{{"baseline", baseline}, {"jitgrant", jitgrant}} {
		b.Run(bc.name, func(b *testing.B) {
			in, out := wrapperspb.String(""), new(wrapperspb.StringValue)
			b.ReportAllocs()
			for b.Loop() {
				cc := dialBench(b, bc.addr, client, bundle)
				if err := cc.Invoke(b.Context(), mGetBalance, in, out); err != nil {
					b.Fatal(err)
				}
				cc.Close()
			}
		})
	}
}
