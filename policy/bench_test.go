package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchPolicy returns a policy of n rules where only the last matches
// benchRequest(sameMethod), and carries an auto_approve condition that
// holds for it. With sameMethod false each rule covers a service of its own
// and every rule lists the requester (after a fixed ID that does not match),
// so only the method tells rules apart. With sameMethod true every rule
// covers the requested method and rules differ by requester, so the method
// index cannot narrow the search: Decide matches the requester against
// every rule.
func benchPolicy(tb testing.TB, n int, sameMethod bool) *Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString("version: 1\ngroups:\n  sre: {members: [\"spiffe://example.org/person/oncall-*\"]}\n  sec: {members: [\"spiffe://example.org/person/sec/*\"]}\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: rule-%03d\n", i)
		if sameMethod {
			fmt.Fprintf(&b, "    requesters: [\"spiffe://example.org/team-%d/person/*\", \"spiffe://example.org/team-%d/workload/*\"]\n", i, i)
			b.WriteString("    scopes: [{method: /bank.v1.Ledger/Read, resources: [\"accounts/*\"]}]\n")
		} else {
			fmt.Fprintf(&b, "    requesters: [\"spiffe://example.org/workload/billing-%d\", \"spiffe://example.org/team-%d/workload/*\"]\n", i, n-1)
			fmt.Fprintf(&b, "    scopes: [{method: /bank.v1.Service%03d/Read, resources: [\"accounts/*\"]}, {method: /bank.v1.Service%03d/Write, resources: [\"accounts/*/entries/*\"]}]\n", i, i)
		}
		b.WriteString("    max_ttl: 30m\n    reason: {required: true, pattern: '^INC-[0-9]+'}\n")
		b.WriteString("    approvals: [{count: 1, from: [sre]}, {count: 1, from: [sec]}]\n")
		if i == n-1 {
			b.WriteString(`    auto_approve: 'ttl <= duration("10m") && scopes.all(s, s.method.endsWith("/Read"))'` + "\n")
		}
	}
	p, err := Parse([]byte(b.String()), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func benchRequest(n int, sameMethod bool) Request {
	method := fmt.Sprintf("/bank.v1.Service%03d/Read", n-1)
	if sameMethod {
		method = "/bank.v1.Ledger/Read"
	}
	return Request{
		Requester: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/team-%d/workload/payments", n-1)),
		Scopes:    []grant.Scope{{Method: method, Resources: []string{"accounts/42"}}},
		TTL:       5 * time.Minute,
		Reason:    "INC-1234: refund stuck",
		Time:      time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC),
	}
}

// BenchmarkDecide measures one decision that is auto-approved by the last
// of n rules. rules=100 is the target case (at most 5 µs/op);
// rules=100-same-method is the worst case for the method index; rules=1 is
// the baseline measured in the same run (validation, one rule's checks and
// the condition), so the cost of the other 99 rules is the difference.
func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		name       string
		n          int
		sameMethod bool
	}{
		{"rules=1", 1, false},
		{"rules=100", 100, false},
		{"rules=100-same-method", 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, req := benchPolicy(b, bc.n, bc.sameMethod), benchRequest(bc.n, bc.sameMethod)
			want := fmt.Sprintf("rule-%03d", bc.n-1)
			if d := p.Decide(req); d.Outcome != AutoApproved || d.Rule != want {
				b.Fatalf("decision %v by %q, want auto_approved by %s:\n%s", d.Outcome, d.Rule, want, d.Explain())
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(req)
			}
		})
	}
}
