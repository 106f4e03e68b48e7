package verifier_test

import (
	"context"
	"log"
	"net"

	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// A protected service: its SVID and trust bundle come from the SPIFFE
// Workload API, and Refund's resource is the request's "account" field.
func ExampleVerifier_ServerOptions() {
	ctx := context.Background()
	source, err := workloadapi.NewX509Source(ctx) // SPIFFE_ENDPOINT_SOCKET
	if err != nil {
		log.Fatal(err)
	}
	defer source.Close()
	v, err := verifier.New(verifier.Config{
		SVIDSource:     source,
		BundleSource:   source,
		ResourceFields: map[string]string{"/bank.v1.Ledger/Refund": "account"},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(v.ServerOptions()...)
	// pb.RegisterLedgerServer(srv, ledger{}) and in a handler:
	//   g, _ := verifier.GrantFromContext(ctx)
	lis, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(lis))
}

// A workload that calls the service with the grant SVID whose hint is the
// grant ID, following its rotation through the Workload API.
func ExamplePickHint() {
	ctx := context.Background()
	source, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithDefaultX509SVIDPicker(verifier.PickHint("req-7f3a")))
	if err != nil {
		log.Fatal(err)
	}
	defer source.Close()
	ledgerID := spiffeid.RequireFromString("spiffe://example.org/ledger")
	cc, err := grpc.NewClient("ledger.internal:8443", grpc.WithTransportCredentials(
		verifier.ClientCredentials(source, source, tlsconfig.AuthorizeID(ledgerID))))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
