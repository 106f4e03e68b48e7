package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const decidePolicy = `version: 1
groups:
  sre: {members: ["spiffe://ex.org/person/alice", "spiffe://ex.org/person/oncall-*"]}
  sec: {members: ["spiffe://ex.org/person/sec/*"]}
rules:
  - name: narrow
    requesters: ["spiffe://ex.org/workload/payments"]
    scopes:
      - {method: /bank.v1.Ledger/Refund, resources: ["accounts/*", "accounts/*/entries/*"]}
      - {method: /bank.v1.Ledger/GetBalance}
    max_ttl: 15m
    reason: {required: true, pattern: '^INC-[0-9]+'}
    approvals: [{count: 1, from: [sre]}, {count: 1, from: [sec]}]
    max_uses: 5
    pending_timeout: 30m
  - name: auto
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /bank.v1.Reports/*}]
    approvals: [{count: 1, from: [sre]}]
    auto_approve: >-
      ttl <= duration("10m") && reason.startsWith("ok") && time.getHours("UTC") < 18 &&
      scopes.all(s, s.method.endsWith("/Get") && s.resources.size() == 0) && use_limit == 0 &&
      requester_path.startsWith("/person/") && requester.startsWith("spiffe://ex.org/")
  - name: failing-cel
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /bank.v1.Broken/Get}]
    approvals: [{count: 1, from: [sre]}]
    auto_approve: 'scopes[3].method == "x"'
  - name: costly-cel
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /bank.v1.Costly/Get}]
    approvals: [{count: 1, from: [sre]}]
    auto_approve: >-
      [0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c,
      [0,1,2,3,4,5,6,7,8,9].all(d, [0,1,2,3,4,5,6,7,8,9].all(e, [0,1,2,3,4,5,6,7,8,9].all(f, reason != "x"))))))
  - name: glass
    requesters: ["spiffe://ex.org/person/oncall-*"]
    scopes: [{method: /bank.v1.Admin/*}]
    approvals: [{count: 1, from: [sec]}]
    break_glass: true
    auto_approve: 'reason == "routine"'
  - name: admin
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /bank.v1.Admin/*}]
    approvals: [{count: 2, from: [sre, sec]}]
`

var (
	payments = spiffeid.RequireFromString("spiffe://ex.org/workload/payments")
	alice    = spiffeid.RequireFromString("spiffe://ex.org/person/alice")
	bob      = spiffeid.RequireFromString("spiffe://ex.org/person/bob")
	oncall   = spiffeid.RequireFromString("spiffe://ex.org/person/oncall-carol")
	sec1     = spiffeid.RequireFromString("spiffe://ex.org/person/sec/dan")
	sec2     = spiffeid.RequireFromString("spiffe://ex.org/person/sec/erin")
	noon     = time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
)

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func scope(method string, resources ...string) grant.Scope {
	return grant.Scope{Method: method, Resources: resources}
}

// refund is a valid request the "narrow" rule sends for approval; tests
// change one field.
func refund(edit func(*Request)) Request {
	r := Request{
		Requester: payments,
		Scopes:    []grant.Scope{scope("/bank.v1.Ledger/Refund", "accounts/42")},
		TTL:       10 * time.Minute,
		Reason:    "INC-7: refund stuck",
		Time:      noon,
		UseLimit:  1,
	}
	if edit != nil {
		edit(&r)
	}
	return r
}

func report(by spiffeid.ID, ttl time.Duration, reason string, scopes ...grant.Scope) Request {
	if len(scopes) == 0 {
		scopes = []grant.Scope{scope("/bank.v1.Reports/Get")}
	}
	return Request{Requester: by, Scopes: scopes, TTL: ttl, Reason: reason, Time: noon}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	many := make([]grant.Scope, grant.MaxScopes+1)
	for i := range many {
		many[i] = scope("/bank.v1.Ledger/GetBalance", "accounts/"+string(rune('a'+i%26))+strings.Repeat("x", i))
	}
	admin := func(by spiffeid.ID, bg bool, reason string) Request {
		return Request{Requester: by, Scopes: []grant.Scope{scope("/bank.v1.Admin/Drop")}, TTL: time.Minute, Reason: reason, Time: noon, BreakGlass: bg}
	}
	tests := []struct {
		name    string
		req     Request
		outcome Outcome
		rule    string
		factors string // factorsPhrase of the decision's factors
		reason  string // a substring of some reason
	}{
		// Invalid requests.
		{name: "no requester", req: refund(func(r *Request) { r.Requester = spiffeid.ID{} }), reason: "invalid request: no requester"},
		{name: "no scopes", req: refund(func(r *Request) { r.Scopes = nil }), reason: "invalid request: no scopes"},
		{name: "too many scopes", req: refund(func(r *Request) { r.Scopes = many }), reason: "65 scopes, more than 64"},
		{name: "zero ttl", req: refund(func(r *Request) { r.TTL = 0 }), reason: "ttl 0s: must be positive"},
		{name: "negative ttl", req: refund(func(r *Request) { r.TTL = -time.Minute }), reason: "ttl -1m: must be positive"},
		{name: "reason too long", req: refund(func(r *Request) { r.Reason = "INC-1 " + strings.Repeat("x", MaxReasonLength) }), reason: "more than 1024"},
		{name: "reason not utf8", req: refund(func(r *Request) { r.Reason = "INC-1 \xff" }), reason: "not valid UTF-8"},
		{name: "no time", req: refund(func(r *Request) { r.Time = time.Time{} }), reason: "no request time"},
		{name: "bad method", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("Refund")} }), reason: `scope 0: method "Refund"`},
		{name: "bad resource", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "a*")} }), reason: "scope 0: resource 0"},
		{name: "duplicate scope", req: refund(func(r *Request) { r.Scopes = append(r.Scopes, r.Scopes[0]) }), reason: "scope 1 duplicates scope 0"},

		// Matching.
		{name: "needs approval", req: refund(nil), outcome: NeedsApproval, rule: "narrow", factors: "1 approver from [sre] and 1 from [sec]",
			reason: `rule "narrow" matched: requester matches "spiffe://ex.org/workload/payments"`},
		{name: "needs line", req: refund(nil), outcome: NeedsApproval, rule: "narrow", reason: "needs 1 approver from [sre] and 1 from [sec]"},
		{name: "unknown requester", req: refund(func(r *Request) { r.Requester = spiffeid.RequireFromString("spiffe://ex.org/workload/other") }), reason: "no rule lists requester spiffe://ex.org/workload/other"},
		{name: "other trust domain", req: refund(func(r *Request) { r.Requester = spiffeid.RequireFromString("spiffe://evil.org/workload/payments") }), reason: "no rule lists requester"},
		{name: "method not covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Delete")} }), reason: "no rule for this requester covers scope /bank.v1.Ledger/Delete (any resource)"},
		{name: "resource not covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "users/1")} }), reason: "covers scope /bank.v1.Ledger/Refund [users/1]"},
		{name: "one resource of two not covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "accounts/1", "users/1")} }), reason: "no rule for this requester covers"},
		{name: "no resources not covered by limited rule", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund")} }), reason: "covers scope /bank.v1.Ledger/Refund (any resource)"},
		{name: "deeper resource not covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "accounts/1/x")} }), reason: "no rule for this requester covers"},
		{name: "wildcard resource covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "accounts/*")} }), outcome: NeedsApproval, rule: "narrow"},
		{name: "second resource pattern", req: refund(func(r *Request) {
			r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "accounts/1", "accounts/*/entries/9")}
		}), outcome: NeedsApproval, rule: "narrow"},
		{name: "star resource not covered", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/Refund", "*")} }), reason: "no rule for this requester covers"},
		{name: "unlimited rule scope covers resources", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/GetBalance", "accounts/1")} }), outcome: NeedsApproval, rule: "narrow"},
		{name: "two scopes covered", req: refund(func(r *Request) { r.Scopes = append(r.Scopes, scope("/bank.v1.Ledger/GetBalance")) }), outcome: NeedsApproval, rule: "narrow"},
		{name: "service wildcard request not covered by a method", req: refund(func(r *Request) { r.Scopes = []grant.Scope{scope("/bank.v1.Ledger/*")} }), reason: "no rule for this requester covers"},
		{name: "service wildcard request covered by service rule", req: report(bob, time.Minute, "ok", scope("/bank.v1.Reports/*")), outcome: NeedsApproval, rule: "auto"},
		{name: "scopes split over rules", req: report(bob, time.Minute, "ok", scope("/bank.v1.Reports/Get"), scope("/bank.v1.Admin/Drop")), reason: "no one rule covers them all"},
		{name: "similar service not covered", req: report(bob, time.Minute, "ok", scope("/bank.v1.ReportsX/Get")), reason: "no rule for this requester covers"},

		// Checks of the matching rule; no fall through.
		{name: "ttl above max_ttl", req: refund(func(r *Request) { r.TTL = 20 * time.Minute }), rule: "narrow", reason: "denied: ttl 20m exceeds rule max_ttl 15m"},
		{name: "ttl at max_ttl", req: refund(func(r *Request) { r.TTL = 15 * time.Minute }), outcome: NeedsApproval, rule: "narrow"},
		{name: "reason missing", req: refund(func(r *Request) { r.Reason = "" }), rule: "narrow", reason: "denied: reason required"},
		{name: "reason mismatch", req: refund(func(r *Request) { r.Reason = "because" }), rule: "narrow", reason: `denied: reason does not match pattern "^INC-[0-9]+"`},
		{name: "unlimited uses above max_uses", req: refund(func(r *Request) { r.UseLimit = 0 }), rule: "narrow", reason: "denied: use_limit 0 (unlimited) exceeds rule max_uses 5"},
		{name: "uses above max_uses", req: refund(func(r *Request) { r.UseLimit = 6 }), rule: "narrow", reason: "use_limit 6 exceeds rule max_uses 5"},
		{name: "uses at max_uses", req: refund(func(r *Request) { r.UseLimit = 5 }), outcome: NeedsApproval, rule: "narrow"},
		{name: "several checks fail", req: refund(func(r *Request) { r.TTL, r.Reason = time.Hour, "" }), rule: "narrow", reason: "reason required"},

		// Auto-approve.
		{name: "auto-approved", req: report(bob, 10*time.Minute, "ok: monthly"), outcome: AutoApproved, rule: "auto", reason: "auto-approved: auto_approve is true"},
		{name: "auto false", req: report(bob, 11*time.Minute, "ok"), outcome: NeedsApproval, rule: "auto", factors: "1 approver from [sre]", reason: "auto_approve is false"},
		{name: "auto false on time", req: func() Request { r := report(bob, time.Minute, "ok"); r.Time = noon.Add(7 * time.Hour); return r }(), outcome: NeedsApproval, rule: "auto"},
		{name: "auto false on resources", req: report(bob, time.Minute, "ok", scope("/bank.v1.Reports/Get", "r/1")), outcome: NeedsApproval, rule: "auto"},
		{name: "auto false on use_limit", req: func() Request { r := report(bob, time.Minute, "ok"); r.UseLimit = 3; return r }(), outcome: NeedsApproval, rule: "auto"},
		{name: "cel error fails closed", req: report(bob, time.Minute, "", scope("/bank.v1.Broken/Get")), outcome: NeedsApproval, rule: "failing-cel", factors: "1 approver from [sre]", reason: "auto_approve failed to evaluate, so not approved"},
		{name: "cel cost limit fails closed", req: report(bob, time.Minute, "", scope("/bank.v1.Costly/Get")), outcome: NeedsApproval, rule: "costly-cel", reason: "cost limit"},

		// Break-glass.
		{name: "break-glass", req: admin(oncall, true, "INC-9"), outcome: BreakGlass, rule: "glass", factors: "1 approver from [sec]", reason: "break-glass: issued at once, flagged and audited; review after the fact: 1 approver from [sec]"},
		{name: "break-glass over auto_approve", req: admin(oncall, true, "routine"), outcome: BreakGlass, rule: "glass"},
		{name: "break-glass rule serves normal requests", req: admin(oncall, false, "routine"), outcome: AutoApproved, rule: "glass"},
		{name: "break-glass rule normal needs approval", req: admin(oncall, false, "other"), outcome: NeedsApproval, rule: "glass", factors: "1 approver from [sec]"},
		{name: "break-glass not allowed", req: admin(bob, true, "x"), reason: `break-glass not allowed: rule "admin" matches but does not allow break-glass`},
		{name: "break-glass where only a plain rule matches", req: refund(func(r *Request) { r.BreakGlass = true }), reason: `break-glass not allowed: rule "narrow" matches`},
		{name: "break-glass no rule for requester", req: func() Request {
			r := admin(bob, true, "x")
			r.Scopes = []grant.Scope{scope("/bank.v1.Nothing/X")}
			return r
		}(), reason: "no break-glass rule lists requester spiffe://ex.org/person/bob"},
		{name: "later rule", req: admin(bob, false, "x"), outcome: NeedsApproval, rule: "admin", factors: "2 approvers from [sre sec]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.req)
			if d.Outcome != tt.outcome || d.Rule != tt.rule {
				t.Fatalf("Decide = %s by %q, want %s by %q\n%s", d.Outcome, d.Rule, tt.outcome, tt.rule, d.Explain())
			}
			if tt.factors != "" && factorsOrNone(d.Factors) != tt.factors {
				t.Errorf("factors = %s, want %s", factorsOrNone(d.Factors), tt.factors)
			}
			if (d.Outcome == NeedsApproval || d.Outcome == BreakGlass) != (len(d.Factors) > 0) {
				t.Errorf("outcome %s with factors %v", d.Outcome, d.Factors)
			}
			if tt.reason != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), tt.reason) {
				t.Errorf("reasons lack %q:\n%s", tt.reason, d.Explain())
			}
			if len(d.Reasons) == 0 {
				t.Error("no reasons")
			}
		})
	}
}

func TestDecideFields(t *testing.T) {
	p := mustParse(t, decidePolicy)
	d := p.Decide(refund(nil))
	if d.MaxTTL != 15*time.Minute || d.PendingTimeout != 30*time.Minute {
		t.Errorf("MaxTTL %v PendingTimeout %v", d.MaxTTL, d.PendingTimeout)
	}
	d.Factors[0].Groups[0] = "mutated"
	if again := p.Decide(refund(nil)); again.Factors[0].Groups[0] != "sre" {
		t.Error("a decision's factors alias the policy")
	}
	if d := p.Decide(report(bob, time.Minute, "ok")); d.MaxTTL != time.Hour || d.PendingTimeout != DefaultPendingTimeout {
		t.Errorf("defaults: MaxTTL %v PendingTimeout %v", d.MaxTTL, d.PendingTimeout)
	}
	var none *Policy
	if d := none.Decide(refund(nil)); d.Outcome != Denied || !strings.Contains(d.Reasons[0], "no policy loaded") {
		t.Errorf("nil policy: %+v", d)
	}
}

func TestOutcomeAndExplain(t *testing.T) {
	for o := Denied; o <= BreakGlass; o++ {
		got, err := ParseOutcome(o.String())
		if err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o, got, err)
		}
	}
	if _, err := ParseOutcome("approved"); err == nil {
		t.Error("ParseOutcome accepted approved")
	}
	if s := Outcome(9).String(); s != "Outcome(9)" {
		t.Errorf("Outcome(9) = %s", s)
	}
	p := mustParse(t, decidePolicy)
	want := `outcome: needs_approval
rule: narrow
needs: 1 approver from [sre] and 1 from [sec]
max_ttl: 15m
pending_timeout: 30m
why:
  - rule "narrow" matched: requester matches "spiffe://ex.org/workload/payments"
  - needs 1 approver from [sre] and 1 from [sec]
`
	if got := p.Decide(refund(nil)).Explain(); got != want {
		t.Errorf("Explain =\n%s\nwant\n%s", got, want)
	}
	got := p.Decide(refund(func(r *Request) { r.Requester = bob })).Explain()
	if !strings.HasPrefix(got, "outcome: denied\nrule: (none)\nwhy:\n  - denied: no rule matches") {
		t.Errorf("Explain denied =\n%s", got)
	}
	got = p.Decide(Request{Requester: oncall, Scopes: []grant.Scope{scope("/bank.v1.Admin/X")}, TTL: time.Minute, Time: noon, BreakGlass: true}).Explain()
	if !strings.Contains(got, "review after the fact: 1 approver from [sec]\n") {
		t.Errorf("Explain break-glass =\n%s", got)
	}
	if s := (Factor{Count: 2, Groups: []string{"a", "b"}}).String(); s != "2 approvers from [a b]" {
		t.Errorf("Factor.String = %s", s)
	}
}
