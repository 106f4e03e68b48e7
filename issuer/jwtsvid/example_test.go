package jwtsvid_test

import (
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The issuer mints a grant's JWT-SVID; ValidateJWTSVID (or a relying party
// holding the JWT bundle) reads the grant back and authorizes a call.
func Example() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	td := spiffeid.RequireTrustDomainFromString("example.org")
	signer, err := jwtsvid.GenerateSigner(jwtsvid.Config{TrustDomain: td, Clock: clock})
	if err != nil {
		panic(err)
	}

	token, exp, err := signer.Mint(jwtsvid.Request{
		ID:       spiffeid.RequireFromPath(td, "/ns/prod/sa/ledger-client"),
		Audience: []string{"spiffe://example.org/ledger"},
		TTL:      5 * time.Minute,
		Grant: &grant.Grant{
			ID:     "req-7f3a",
			Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}},
		},
	})
	if err != nil {
		panic(err)
	}

	claims, err := jwtsvid.Validate(token, "spiffe://example.org/ledger", signer.Bundle(), jwtsvid.WithTime(clock()))
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.ID, claims.Expiry.Equal(exp), exp.Format(time.RFC3339))
	fmt.Println(claims.Grant.ID, claims.Grant.Authorize("/bank.v1.Ledger/Refund", "accounts/42"))
	fmt.Println(claims.Raw[jwtsvid.ClaimGrantID])
	// Output:
	// spiffe://example.org/ns/prod/sa/ledger-client true 2026-03-01T12:05:00Z
	// req-7f3a allowed
	// req-7f3a
}

// During a key rotation the bundle holds the previous key as well, until
// every token it signed has expired.
func ExampleNewBundle() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	previous, _ := jwtsvid.GenerateSigner(jwtsvid.Config{TrustDomain: td})
	current, _ := jwtsvid.GenerateSigner(jwtsvid.Config{TrustDomain: td})
	bundle, err := jwtsvid.NewBundle(td, current.Authority(), previous.Authority())
	if err != nil {
		panic(err)
	}
	jwks, err := jwtsvid.MarshalJWKS(bundle) // for FetchJWTBundles
	if err != nil {
		panic(err)
	}
	fmt.Println(len(bundle.JWTAuthorities()), len(jwks) > 0)
	// Output: 2 true
}
