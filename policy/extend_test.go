package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestExtendBlockErrors: a bad extend: block is refused at Parse, naming
// the key and its line.
func TestExtendBlockErrors(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  string
	}{
		{"unknown key", `    extend: {max_totl: 1h}`, "11: rules[0].extend.max_totl"},
		{"negative max_total", `    extend: {max_total: -1m}`, "rules[0].extend.max_total: must be positive"},
		{"max_total over the cap", `    extend: {max_total: 48h}`, "rules[0].extend.max_total: 48h is above the global cap"},
		{"negative max_count", `    extend: {max_count: -1}`, "rules[0].extend.max_count: must be between 0"},
		{"not bool", `    extend: {auto_approve: 'extension.reason'}`, "rules[0].extend.auto_approve: must be a bool expression"},
		{"request variable", `    extend: {auto_approve: 'ttl < duration("1m")'}`, "rules[0].extend.auto_approve: does not compile"},
		{"not a mapping", `    extend: true`, "rules[0].extend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(edit(nil, tt.block)), Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestDecideExtend: the extend: block's limits and condition decide an
// extension; a rule without one refuses it.
func TestDecideExtend(t *testing.T) {
	p, err := Parse([]byte(edit(map[int]string{10: `    max_ttl: 30m`},
		`    extend: {max_total: 45m, max_count: 2, auto_approve: 'extension.ttl <= duration("5m") && grant.extensions == 0 && extension.reason != ""'}`,
		`  - name: plain`, `    requesters: ["spiffe://ex.org/workload/*"]`, `    scopes: [{method: /a.B/D}]`, `    approvals: [{count: 1, from: [sre]}]`,
		`  - name: defaults`, `    requesters: ["spiffe://ex.org/workload/*"]`, `    scopes: [{method: /a.B/E}]`, `    max_ttl: 20m`, `    approvals: [{count: 1, from: [sre]}]`, `    extend: {}`,
	)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	who := spiffeid.RequireFromString("spiffe://ex.org/workload/w")
	tests := []struct {
		name string
		req  ExtendRequest
		want Outcome
		why  string
	}{
		{"auto", ExtendRequest{Rule: "r", TTL: 5 * time.Minute, Total: 20 * time.Minute, Reason: "more"}, AutoApproved, "condition is true"},
		{"condition false: needs approval", ExtendRequest{Rule: "r", TTL: 10 * time.Minute, Total: 25 * time.Minute, Reason: "more"}, NeedsApproval, "approvals"},
		{"second extension needs approval", ExtendRequest{Rule: "r", TTL: time.Minute, Total: 25 * time.Minute, Count: 1, Reason: "more"}, NeedsApproval, "approvals"},
		{"past max_total", ExtendRequest{Rule: "r", TTL: time.Minute, Total: 46 * time.Minute}, Denied, "total duration at 45m"},
		{"past max_count", ExtendRequest{Rule: "r", TTL: time.Minute, Total: 25 * time.Minute, Count: 2}, Denied, "at most 2 extensions"},
		{"no extend block", ExtendRequest{Rule: "plain", TTL: time.Minute, Total: 6 * time.Minute}, Denied, "no extend: block"},
		{"unknown rule", ExtendRequest{Rule: "gone", TTL: time.Minute}, Denied, "gone"},
		{"zero ttl", ExtendRequest{Rule: "r", Total: 5 * time.Minute}, Denied, "positive"},
		{"default max_total is max_ttl", ExtendRequest{Rule: "defaults", TTL: time.Minute, Total: 21 * time.Minute}, Denied, "total duration at 20m"},
		{"defaults: needs approval", ExtendRequest{Rule: "defaults", TTL: time.Minute, Total: 20 * time.Minute, Count: 50}, NeedsApproval, "approvals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Requester, tt.req.GrantID, tt.req.Time = who, "g1", time.Now()
			d := p.DecideExtend(tt.req)
			if d.Outcome != tt.want || !strings.Contains(d.Reason, tt.why) {
				t.Errorf("DecideExtend = %v (%s), want %v with %q", d.Outcome, d.Reason, tt.want, tt.why)
			}
		})
	}
}

// TestExtensionApprovals: an extend: block's approvals decide who reviews
// an extension and when it is approved; without them, the rule's do.
func TestExtensionApprovals(t *testing.T) {
	p, err := Parse([]byte(edit(nil, `    extend: {approvals: [{count: 1, from: [ops]}]}`,
		`  - name: plain`, `    requesters: ["spiffe://ex.org/workload/*"]`, `    scopes: [{method: /a.B/D}]`, `    approvals: [{count: 1, from: [sre]}]`, `    extend: {}`,
	)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := spiffeid.RequireFromString("spiffe://ex.org/workload/w")
	alice := spiffeid.RequireFromString("spiffe://ex.org/person/alice") // sre and ops
	bob := spiffeid.RequireFromString("spiffe://ex.org/person/bob")     // sre only
	tests := []struct {
		rule     string
		approver spiffeid.ID
		eligible bool
	}{
		{"r", alice, true}, {"r", bob, false}, {"plain", bob, true}, {"plain", w, false},
	}
	for _, tt := range tests {
		ok, why := p.EligibleExtensionApprover(tt.rule, w, tt.approver)
		if ok != tt.eligible {
			t.Errorf("%s on rule %s: eligible %v (%s), want %v", tt.approver, tt.rule, ok, why, tt.eligible)
		}
		prog, err := p.EvaluateExtension(tt.rule, w, []Review{{Approver: tt.approver, Approve: true}})
		if err != nil || prog.Satisfied != tt.eligible {
			t.Errorf("%s on rule %s: satisfied %v (%v), want %v", tt.approver, tt.rule, prog.Satisfied, err, tt.eligible)
		}
	}
	if d := p.DecideExtend(ExtendRequest{Rule: "r", Requester: w, TTL: time.Minute}); d.Outcome != NeedsApproval || !strings.Contains(d.Reason, "ops") {
		t.Errorf("DecideExtend = %v (%s), want NeedsApproval naming ops", d.Outcome, d.Reason)
	}
}
