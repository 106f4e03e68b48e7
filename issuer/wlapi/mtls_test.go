package wlapi_test

import (
	"net"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// TestGrantOverMTLS: a client whose X509Source picks the grant SVID by hint
// calls a verifier-protected service, which sees the grant.
func TestGrantOverMTLS(t *testing.T) {
	e := newEnv(t, uid)
	g := e.grant()

	svid, err := e.ca.Mint(ca.Request{ID: ledgerID, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{
		SVIDSource: svid, BundleSource: e.ca.Bundle(), ResourceFields: testledger.ResourceFields(),
		Clock: e.clock.Now, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(v.ServerOptions()...)
	srv.RegisterService(testledger.ServiceDesc(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	ctx := testContext(t)
	source, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(e.addr()),
		workloadapi.WithDefaultX509SVIDPicker(verifier.PickHint(g.ID)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	creds := grpccredentials.MTLSClientCredentials(source, source, tlsconfig.AuthorizeID(ledgerID))
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	got, err := testledger.Call(cc, testledger.GetBalance, "")
	if err != nil {
		t.Fatal(err)
	}
	if got != g.ID {
		t.Fatalf("the service saw grant %q, want %q", got, g.ID)
	}
}
