package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const approvePolicy = `version: 1
groups:
  sre: {members: ["spiffe://ex.org/person/alice", "spiffe://ex.org/person/oncall-*"]}
  sec: {members: ["spiffe://ex.org/person/sec/*", "spiffe://ex.org/person/alice"]}
rules:
  - name: two-factor
    requesters: ["spiffe://ex.org/person/*", "spiffe://ex.org/workload/*"]
    scopes: [{method: /a.B/C}]
    approvals: [{count: 1, from: [sre]}, {count: 1, from: [sec]}]
  - name: lenient
    requesters: ["spiffe://ex.org/workload/*"]
    scopes: [{method: /a.B/D}]
    approvals: [{count: 2, from: [sre, sec]}]
    deny_ends_request: false
`

func approve(id spiffeid.ID) Review { return Review{Approver: id, Approve: true} }
func reject(id spiffeid.ID) Review  { return Review{Approver: id} }

func TestEvaluate(t *testing.T) {
	p := mustParse(t, approvePolicy)
	tests := []struct {
		name      string
		rule      string
		requester spiffeid.ID
		reviews   []Review
		satisfied bool
		denied    spiffeid.ID // zero: not denied
		missing   string      // factorsOrNone of Missing
		counted   []spiffeid.ID
	}{
		{name: "no reviews", rule: "two-factor", requester: payments,
			missing: "1 approver from [sre] and 1 from [sec]"},
		{name: "one approver in both groups counts once", rule: "two-factor", requester: payments,
			reviews: []Review{approve(alice)}, missing: "1 approver from [sec]", counted: []spiffeid.ID{alice}},
		{name: "approver in two groups goes where needed", rule: "two-factor", requester: payments,
			reviews: []Review{approve(alice), approve(oncall)}, satisfied: true, missing: "none", counted: []spiffeid.ID{alice, oncall}},
		{name: "two plain approvers", rule: "two-factor", requester: payments,
			reviews: []Review{approve(sec1), approve(oncall)}, satisfied: true, missing: "none", counted: []spiffeid.ID{sec1, oncall}},
		{name: "extra approver not counted", rule: "two-factor", requester: payments,
			reviews: []Review{approve(sec1), approve(sec2), approve(oncall)}, satisfied: true, missing: "none", counted: []spiffeid.ID{sec1, oncall}},
		{name: "self-approval ignored", rule: "two-factor", requester: alice,
			reviews: []Review{approve(alice), approve(oncall)}, missing: "1 approver from [sec]", counted: []spiffeid.ID{oncall}},
		{name: "duplicate approval counted once", rule: "two-factor", requester: payments,
			reviews: []Review{approve(sec1), approve(sec1)}, missing: "1 approver from [sre]", counted: []spiffeid.ID{sec1}},
		{name: "non-eligible approver ignored", rule: "two-factor", requester: payments,
			reviews: []Review{approve(bob), approve(spiffeid.ID{})}, missing: "1 approver from [sre] and 1 from [sec]"},
		{name: "eligible deny ends it", rule: "two-factor", requester: payments,
			reviews: []Review{approve(alice), approve(oncall), reject(sec1)}, denied: sec1, missing: "none", counted: []spiffeid.ID{alice, oncall}},
		{name: "first deny is reported", rule: "two-factor", requester: payments,
			reviews: []Review{reject(sec2), reject(sec1)}, denied: sec2, missing: "1 approver from [sre] and 1 from [sec]"},
		{name: "non-eligible deny ignored", rule: "two-factor", requester: payments,
			reviews: []Review{approve(alice), reject(bob), approve(sec1)}, satisfied: true, missing: "none", counted: []spiffeid.ID{alice, sec1}},
		{name: "requester deny ignored", rule: "two-factor", requester: sec2,
			reviews: []Review{reject(sec2), approve(alice), approve(sec1)}, satisfied: true, missing: "none", counted: []spiffeid.ID{alice, sec1}},
		{name: "first review of a person counts", rule: "two-factor", requester: payments,
			reviews: []Review{approve(sec1), reject(sec1), approve(oncall)}, satisfied: true, missing: "none", counted: []spiffeid.ID{sec1, oncall}},
		{name: "deny does not end a lenient rule", rule: "lenient", requester: payments,
			reviews: []Review{reject(sec1), approve(alice), approve(sec2)}, satisfied: true, missing: "none", counted: []spiffeid.ID{alice, sec2}},
		{name: "count of two from either group", rule: "lenient", requester: payments,
			reviews: []Review{approve(oncall)}, missing: "1 approver from [sre sec]", counted: []spiffeid.ID{oncall}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Evaluate(tt.rule, tt.requester, tt.reviews)
			if err != nil {
				t.Fatal(err)
			}
			if got.Satisfied != tt.satisfied || got.Denied != !tt.denied.IsZero() || got.DeniedBy != tt.denied {
				t.Errorf("Satisfied %v Denied %v by %v, want %v %v by %v", got.Satisfied, got.Denied, got.DeniedBy, tt.satisfied, !tt.denied.IsZero(), tt.denied)
			}
			if m := factorsOrNone(got.Missing); m != tt.missing {
				t.Errorf("Missing = %s, want %s", m, tt.missing)
			}
			if !slices.Equal(got.Counted, tt.counted) {
				t.Errorf("Counted = %v, want %v", got.Counted, tt.counted)
			}
		})
	}
	if _, err := p.Evaluate("gone", payments, nil); !errors.Is(err, ErrUnknownRule) {
		t.Errorf("unknown rule: %v", err)
	}
	var none *Policy
	if _, err := none.Evaluate("two-factor", payments, nil); !errors.Is(err, ErrUnknownRule) {
		t.Errorf("nil policy: %v", err)
	}
}

// TestEvaluateMatchingIsMaximal checks the assignment against every order
// of the same reviews: the outcome must not depend on who reviewed first.
func TestEvaluateMatchingIsMaximal(t *testing.T) {
	p := mustParse(t, `version: 1
groups:
  a: {members: ["spiffe://ex.org/p/1", "spiffe://ex.org/p/2"]}
  b: {members: ["spiffe://ex.org/p/2", "spiffe://ex.org/p/3"]}
  c: {members: ["spiffe://ex.org/p/3", "spiffe://ex.org/p/1"]}
rules:
  - name: r
    requesters: ["spiffe://ex.org/w/*"]
    scopes: [{method: /a.B/C}]
    approvals: [{count: 1, from: [a]}, {count: 1, from: [b]}, {count: 1, from: [c]}]
`)
	ids := []spiffeid.ID{
		spiffeid.RequireFromString("spiffe://ex.org/p/1"),
		spiffeid.RequireFromString("spiffe://ex.org/p/2"),
		spiffeid.RequireFromString("spiffe://ex.org/p/3"),
	}
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		var reviews []Review
		for _, i := range order {
			reviews = append(reviews, approve(ids[i]))
		}
		got, err := p.Evaluate("r", payments, reviews)
		if err != nil || !got.Satisfied || len(got.Counted) != 3 {
			t.Errorf("order %v: %+v, %v", order, got, err)
		}
	}
}

func TestEligibleApprover(t *testing.T) {
	p := mustParse(t, approvePolicy)
	tests := []struct {
		name                string
		rule                string
		requester, approver spiffeid.ID
		ok                  bool
		why                 string
	}{
		{name: "member of both", rule: "two-factor", requester: payments, approver: alice, ok: true, why: "member of sre, sec"},
		{name: "member of one", rule: "two-factor", requester: payments, approver: sec1, ok: true, why: "member of sec"},
		{name: "self-approval", rule: "two-factor", requester: alice, approver: alice, why: "self-approval"},
		{name: "not in a group", rule: "two-factor", requester: payments, approver: bob, why: `spiffe://ex.org/person/bob is not in any approver group of rule "two-factor" (sre, sec)`},
		{name: "no approver", rule: "two-factor", requester: payments, why: "no approver identity"},
		{name: "unknown rule", rule: "gone", requester: payments, approver: alice, why: `policy: unknown rule "gone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := p.EligibleApprover(tt.rule, tt.requester, tt.approver)
			if ok != tt.ok || !strings.Contains(why, tt.why) {
				t.Errorf("EligibleApprover = %v, %q; want %v, %q", ok, why, tt.ok, tt.why)
			}
		})
	}
}
