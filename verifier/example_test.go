package verifier_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// exampleLedger is the protected service of the examples: Refund says
// which grant the call was allowed by.
type exampleLedger struct {
	bankv1.UnimplementedLedgerServer
}

func (exampleLedger) Refund(ctx context.Context, in *bankv1.RefundRequest) (*bankv1.Balance, error) {
	g, _ := verifier.GrantFromContext(ctx) // there is one: the interceptor checked it
	fmt.Println("handler: refund on", in.GetAccount(), "under grant", g.ID)
	return &bankv1.Balance{Account: in.GetAccount(), BalanceCents: in.GetAmountCents()}, nil
}

// outcome is how the examples print a call's result.
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	s := status.Convert(err)
	return s.Code().String() + " " + s.Message()
}

// A protected service: one call gives the handshake's credentials and the
// per-RPC interceptors together, and Refund's resource is the request's
// "account" field. In production the service's SVID and trust bundle come
// from the SPIFFE Workload API:
//
//	source, err := workloadapi.NewX509Source(ctx) // SPIFFE_ENDPOINT_SOCKET
//	...
//	v, err := verifier.New(verifier.Config{SVIDSource: source, BundleSource: source, ...})
//
// Here a CA made on the spot mints them, and a client with a grant for
// Refund on accounts/* calls it.
func ExampleVerifier_ServerOptions() {
	authority, err := ca.Generate(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		log.Fatal(err)
	}
	ledgerID := spiffeid.RequireFromString("spiffe://example.org/ledger")
	ledgerSVID, err := authority.Mint(ca.Request{ID: ledgerID, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}

	v, err := verifier.New(verifier.Config{
		SVIDSource:     ledgerSVID,
		BundleSource:   authority.Bundle(),
		ResourceFields: map[string]string{bankv1.Ledger_Refund_FullMethodName: "account"},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(v.ServerOptions()...)
	bankv1.RegisterLedgerServer(srv, exampleLedger{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	// The client side: a grant SVID, as the issuer mints it.
	grantSVID, err := authority.Mint(ca.Request{
		ID:  spiffeid.RequireFromString("spiffe://example.org/workload/payments"),
		TTL: 5 * time.Minute,
		Grant: &grant.Grant{ID: "req-7f3a", Scopes: []grant.Scope{
			{Method: bankv1.Ledger_Refund_FullMethodName, Resources: []string{"accounts/*"}},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(
		verifier.ClientCredentials(grantSVID, authority.Bundle(), tlsconfig.AuthorizeID(ledgerID))))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ledger := bankv1.NewLedgerClient(cc)

	ctx := context.Background()
	for _, account := range []string{"accounts/42", "loans/42"} {
		_, err := ledger.Refund(ctx, &bankv1.RefundRequest{Account: account, AmountCents: 1250})
		fmt.Println("Refund", account+":", outcome(err))
	}
	_, err = ledger.Transfer(ctx, &bankv1.TransferRequest{Account: "accounts/42", To: "accounts/7", AmountCents: 1})
	fmt.Println("Transfer:", outcome(err))
	// Output:
	// handler: refund on accounts/42 under grant req-7f3a
	// Refund accounts/42: OK
	// Refund loans/42: PermissionDenied jitgrant: resource not granted for /bank.v1.Ledger/Refund
	// Transfer: PermissionDenied jitgrant: no grant for /bank.v1.Ledger/Transfer
}

// A workload receives from the Workload API its identity SVID and one SVID
// per active grant, whose hint is the grant ID. To call with a grant, it
// builds its source with PickHint:
//
//	source, err := workloadapi.NewX509Source(ctx,
//		workloadapi.WithDefaultX509SVIDPicker(verifier.PickHint("req-7f3a")))
//	...
//	cc, err := grpc.NewClient("ledger.internal:8443", grpc.WithTransportCredentials(
//		verifier.ClientCredentials(source, source, tlsconfig.AuthorizeID(ledgerID))))
//
// (verifier.WorkloadDialOptions does both.) Here the picker is given the
// SVIDs such a stream carries.
func ExamplePickHint() {
	authority, err := ca.Generate(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		log.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/workload/payments")
	mint := func(g *grant.Grant) *x509svid.SVID {
		svid, err := authority.Mint(ca.Request{ID: id, TTL: 5 * time.Minute, Grant: g})
		if err != nil {
			log.Fatal(err)
		}
		return svid
	}
	svids := []*x509svid.SVID{
		mint(nil), // the identity SVID comes first
		mint(&grant.Grant{ID: "req-1b2c", Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}}),
		mint(&grant.Grant{ID: "req-7f3a", Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund"}}}),
	}

	picked := verifier.PickHint("req-7f3a")(svids)
	g, err := grant.FromCertificate(picked.Certificates[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("picked", picked.Hint, "for", g.Scopes[0].Method)
	// A grant that is gone (expired, revoked) picks nothing, and the source
	// then presents no certificate rather than another one.
	fmt.Println("gone:", verifier.PickHint("req-0000")(svids) == nil)
	// Output:
	// picked req-7f3a for /bank.v1.Ledger/Refund
	// gone: true
}
