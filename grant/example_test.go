package grant_test

import (
	"fmt"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func Example() {
	g := &grant.Grant{
		ID: "req-7f3a",
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/GetBalance"},
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}},
		},
		Approvers: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/person/alice")},
		UseLimit:  1,
	}
	der, err := grant.Marshal(g) // the issuer puts this in the certificate
	if err != nil {
		panic(err)
	}
	back, err := grant.Parse(der) // the verifier reads it back once per connection
	if err != nil {
		panic(err)
	}
	fmt.Println(back.ID, len(der) <= grant.MaxExtensionSize)
	fmt.Println(back.Authorize("/bank.v1.Ledger/Refund", "accounts/42"))
	fmt.Println(back.Authorize("/bank.v1.Ledger/Refund", "loans/42"))
	fmt.Println(back.Authorize("/bank.v1.Ledger/Transfer", "accounts/42"))
	// Output:
	// req-7f3a true
	// allowed
	// resource not in scope
	// method not in scope
}

func ExampleMatchResource() {
	fmt.Println(grant.MatchResource("accounts/*", "accounts/42"))
	fmt.Println(grant.MatchResource("accounts/*", "accounts/42/history"))
	fmt.Println(grant.MatchResource("accounts/*/history", "accounts/42/history"))
	// Output:
	// true
	// false
	// true
}
