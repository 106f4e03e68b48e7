package policy_test

import (
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const file = `version: 1
groups:
  sre: {members: ["spiffe://example.org/person/alice", "spiffe://example.org/person/oncall-*"]}
  security: {members: ["spiffe://example.org/person/sec/*"]}
rules:
  - name: ledger-refund
    requesters: ["spiffe://example.org/workload/payments"]
    scopes: [{method: /bank.v1.Ledger/Refund, resources: ["accounts/*"]}]
    max_ttl: 15m
    reason: {required: true, pattern: '^INC-[0-9]+'}
    approvals: [{count: 1, from: [sre]}, {count: 1, from: [security]}]
`

func ExamplePolicy_Decide() {
	p, err := policy.Parse([]byte(file), policy.Options{})
	if err != nil {
		panic(err)
	}
	d := p.Decide(policy.Request{
		Requester: spiffeid.RequireFromString("spiffe://example.org/workload/payments"),
		Scopes:    []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/42"}}},
		TTL:       10 * time.Minute,
		Reason:    "INC-7: refund stuck",
		Time:      time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC),
	})
	fmt.Print(d.Explain())
	// Output:
	// outcome: needs_approval
	// rule: ledger-refund
	// needs: 1 approver from [sre] and 1 from [security]
	// max_ttl: 15m
	// pending_timeout: 1h
	// why:
	//   - rule "ledger-refund" matched: requester matches "spiffe://example.org/workload/payments"
	//   - needs 1 approver from [sre] and 1 from [security]
}

func ExamplePolicy_Evaluate() {
	p, err := policy.Parse([]byte(file), policy.Options{})
	if err != nil {
		panic(err)
	}
	requester := spiffeid.RequireFromString("spiffe://example.org/workload/payments")
	prog, err := p.Evaluate("ledger-refund", requester, []policy.Review{
		{Approver: spiffeid.RequireFromString("spiffe://example.org/person/oncall-bob"), Approve: true},
		{Approver: spiffeid.RequireFromString("spiffe://example.org/person/oncall-bob"), Approve: true},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(prog.Satisfied, prog.Counted, prog.Missing)
	// Output: false [spiffe://example.org/person/oncall-bob] [1 approver from [security]]
}

func ExampleParse_errors() {
	_, err := policy.Parse([]byte(`version: 1
groups:
  sre: {members: []}
rules:
  - name: r
    requesters: ["spiffe://example.org/*/x*/y"]
    scopes: [{method: /bank.v1.Ledger/Refund}]
    approvals: [{count: 0, from: [sre]}]
    auto_approve: 'ttl < 5'
`), policy.Options{})
	fmt.Println(err)
	// Output:
	// policy: line 3: groups.sre.members: a group nobody is in: list at least one member (a SPIFFE ID or ID pattern)
	// policy: line 6: rules[0].requesters[0]: "spiffe://example.org/*/x*/y": segment "x*": a prefix wildcard is allowed in the last segment only
	// policy: line 8: rules[0].approvals[0].count: must be at least 1, not 0
	// policy: line 9: rules[0].auto_approve: does not compile: 1:5: found no matching overload for '_<_' applied to '(duration, int)'
}
