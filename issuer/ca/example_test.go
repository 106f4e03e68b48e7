package ca_test

import (
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// A trust domain's CA mints a five-minute grant SVID; a plain go-spiffe
// verifier accepts it, and the protected service reads the grant back.
func Example() {
	authority, err := ca.Generate(ca.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
	})
	if err != nil {
		panic(err)
	}

	svid, err := authority.Mint(ca.Request{
		ID:  spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/ledger-client"),
		TTL: 5 * time.Minute,
		Grant: &grant.Grant{
			ID:     "req-42",
			Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}},
		},
	})
	if err != nil {
		panic(err)
	}

	id, _, err := x509svid.Verify(svid.Certificates, authority.Bundle())
	if err != nil {
		panic(err)
	}
	leaf := svid.Certificates[0]
	g, err := grant.FromCertificate(leaf)
	if err != nil {
		panic(err)
	}
	fmt.Println("verified:", id)
	fmt.Println("hint:", svid.Hint)
	fmt.Println("lifetime:", leaf.NotAfter.Sub(leaf.NotBefore))
	fmt.Println("refund of accounts/7:", g.Authorize("/bank.v1.Ledger/Refund", "accounts/7"))
	// Output:
	// verified: spiffe://example.org/ns/prod/sa/ledger-client
	// hint: req-42
	// lifetime: 5m10s
	// refund of accounts/7: allowed
}
