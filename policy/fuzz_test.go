package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzParse checks that Parse never panics, that what it accepts parses
// again to the same policy and keeps the invariants validation promises,
// and that the policy answers questions without panicking.
func FuzzParse(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and minimizing a long file (testdata/example.yaml is in
	// the corpus too) takes most of a short run.
	for _, seed := range []string{edit(nil), approvePolicy, "version: 1\n"} {
		f.Add([]byte(seed))
	}
	req := Request{
		Requester: spiffeid.RequireFromString("spiffe://example.org/person/oncall-bob"),
		Scopes:    []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/1"}}},
		TTL:       5 * time.Minute,
		Reason:    "INC-1: x",
		Time:      time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, Options{})
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			return
		}
		again, err := Parse(data, Options{})
		if err != nil || again.Hash() != p.Hash() || len(again.rules) != len(p.rules) {
			t.Fatalf("re-parse: %v", err)
		}
		if p.maxTTL <= 0 || p.maxTTL > DefaultMaxTTLCap {
			t.Fatalf("max_ttl %v", p.maxTTL)
		}
		for _, r := range p.rules {
			if r.maxTTL <= 0 || r.maxTTL > p.maxTTL || len(r.factors) == 0 || len(r.scopes) == 0 || len(r.requesters) == 0 {
				t.Fatalf("rule %q breaks an invariant", r.name)
			}
			total := 0
			for _, f := range r.factors {
				if f.count < 1 || len(f.groups) == 0 {
					t.Fatalf("rule %q: factor %+v", r.name, f)
				}
				total += f.count
			}
			if total > MaxApprovalsPerRule {
				t.Fatalf("rule %q needs %d approvers", r.name, total)
			}
			for _, s := range r.scopes {
				if err := s.Validate(); err != nil {
					t.Fatalf("rule %q: %v", r.name, err)
				}
			}
			if _, err := p.Evaluate(r.name, req.Requester, []Review{{Approver: req.Requester, Approve: true}}); err != nil {
				t.Fatal(err)
			}
			p.EligibleApprover(r.name, req.Requester, spiffeid.RequireFromString("spiffe://example.org/person/alice"))
		}
		_ = p.Decide(req).Explain()
		p.Allowed(ListAll, req.Requester)
	})
}

// FuzzDecide checks that any request against testdata/example.yaml is
// decided without panicking, and that whatever is not denied is a valid
// grant within the matching rule's limits.
func FuzzDecide(f *testing.F) {
	p, err := Load("testdata/example.yaml", Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("spiffe://example.org/person/bob", "/bank.v1.Ledger/GetBalance", "accounts/42", "", int64(5*time.Minute), "", int64(1736157600), false, uint32(0))
	f.Add("spiffe://example.org/workload/payments", "/bank.v1.Ledger/Refund", "accounts/1", "", int64(10*time.Minute), "INC-1: x", int64(1736157600), false, uint32(1))
	f.Add("spiffe://example.org/person/oncall-eve", "/bank.v1.LedgerAdmin/Rebuild", "", "/bank.v1.LedgerAdmin/*", int64(time.Hour), "INC-9: down", int64(1736157600), true, uint32(0))
	f.Add("spiffe://example.org/person/bob", "/bank.v1.Ledger/*", "*", "bad", int64(-1), "\xff", int64(0), true, uint32(7))
	f.Fuzz(func(t *testing.T, requester, method, resource, method2 string, ttl int64, reason string, unix int64, breakGlass bool, useLimit uint32) {
		id, _ := spiffeid.FromString(requester) // the zero ID when invalid: Decide must deny
		req := Request{
			Requester:  id,
			Scopes:     []grant.Scope{{Method: method}},
			TTL:        time.Duration(ttl),
			Reason:     reason,
			Time:       time.Unix(unix, 0).UTC(),
			BreakGlass: breakGlass,
			UseLimit:   useLimit,
		}
		if resource != "" {
			req.Scopes[0].Resources = strings.Split(resource, ",")
		}
		if method2 != "" {
			req.Scopes = append(req.Scopes, grant.Scope{Method: method2})
		}
		d := p.Decide(req)
		_ = d.Explain()
		if len(d.Reasons) == 0 {
			t.Fatal("decision without reasons")
		}
		switch d.Outcome {
		case Denied:
			return
		case NeedsApproval, BreakGlass:
			if len(d.Factors) == 0 {
				t.Fatalf("%s without factors", d.Outcome)
			}
		case AutoApproved:
		default:
			t.Fatalf("outcome %d", d.Outcome)
		}
		if d.Rule == "" || req.TTL <= 0 || req.TTL > d.MaxTTL || (d.Outcome == BreakGlass) != req.BreakGlass {
			t.Fatalf("%s for %+v:\n%s", d.Outcome, req, d.Explain())
		}
		g := grant.Grant{ID: "fuzz", Scopes: req.Scopes}
		if err := g.Validate(); err != nil {
			t.Fatalf("%s for a request the issuer cannot mint: %v", d.Outcome, err)
		}
	})
}
