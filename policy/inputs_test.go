package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const inputsPolicy = `version: 1
groups:
  sre: {members: ["spiffe://ex.org/person/*"]}
rules:
  - name: strict
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /a.B/Strict}]
    reason: {required: true, pattern: '^(?P<ticket>INC-[0-9]+)'}
    ticket_check: tracker
    approvals: [{count: 1, from: [sre]}]
    auto_approve: 'ticket.open && ticket.assignee == "alice"'
  - name: lenient
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /a.B/Lenient}]
    reason: {required: true, pattern: '^x (CHG-[0-9]+)'}
    ticket_check: tracker
    on_error: needs_approval
    approvals: [{count: 1, from: [sre]}]
    auto_approve: 'true'
  - name: oncall
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /a.B/Read}]
    approvals: [{count: 1, from: [sre]}]
    auto_approve: 'oncall.now && "db" in oncall.schedules'
  - name: plain
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /a.B/Plain}]
    approvals: [{count: 1, from: [sre]}]
`

func TestDecideInputs(t *testing.T) {
	p := mustParse(t, inputsPolicy)
	alice := spiffeid.RequireFromString("spiffe://ex.org/person/alice")
	req := func(method, reason string, tk *Ticket, oc *OnCall) Request {
		return Request{Requester: alice, Scopes: []grant.Scope{{Method: method}}, TTL: time.Minute,
			Reason: reason, Time: caseTime(), Ticket: tk, OnCall: oc}
	}
	tests := []struct {
		name  string
		req   Request
		needs Needs
		want  Outcome
		why   string
	}{
		{name: "open assigned", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-1", Exists: true, Open: true, Assignee: "alice"}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: AutoApproved, why: "ticket INC-1 is open"},
		{name: "open other assignee", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-1", Exists: true, Open: true, Assignee: "bob"}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: NeedsApproval, why: "auto_approve is false"},
		{name: "closed", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-1", Exists: true}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: Denied, why: "denied: ticket INC-1 is not open"},
		{name: "missing", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-1"}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: Denied, why: "ticket INC-1 does not exist"},
		{name: "not fetched", req: req("/a.B/Strict", "INC-1 x", nil, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: Denied, why: "was not checked"},
		{name: "answer about another ticket", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-2", Exists: true, Open: true}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: Denied, why: `answered about "INC-2", not "INC-1"`},
		{name: "checker failed deny", req: req("/a.B/Strict", "INC-1 x", &Ticket{ID: "INC-1", Err: "timeout"}, nil),
			needs: Needs{Rule: "strict", TicketChecker: "tracker", TicketID: "INC-1"}, want: Denied, why: "timeout (on_error: deny)"},
		{name: "checker failed needs approval", req: req("/a.B/Lenient", "x CHG-7", &Ticket{ID: "CHG-7", Err: "down"}, nil),
			needs: Needs{Rule: "lenient", TicketChecker: "tracker", TicketID: "CHG-7"}, want: NeedsApproval, why: "on_error: needs_approval"},
		{name: "first group", req: req("/a.B/Lenient", "x CHG-7", &Ticket{ID: "CHG-7", Exists: true, Open: true}, nil),
			needs: Needs{Rule: "lenient", TicketChecker: "tracker", TicketID: "CHG-7"}, want: AutoApproved},
		{name: "on call", req: req("/a.B/Read", "", nil, &OnCall{Now: true, Schedules: []string{"db"}}),
			needs: Needs{Rule: "oncall", OnCall: true}, want: AutoApproved},
		{name: "on call elsewhere", req: req("/a.B/Read", "", nil, &OnCall{Now: true, Schedules: []string{"web"}}),
			needs: Needs{Rule: "oncall", OnCall: true}, want: NeedsApproval},
		{name: "on-call unknown", req: req("/a.B/Read", "", nil, &OnCall{Err: "refused"}),
			needs: Needs{Rule: "oncall", OnCall: true}, want: Denied, why: "on-call status unknown: refused"},
		{name: "no inputs needed", req: req("/a.B/Plain", "", nil, nil), needs: Needs{Rule: "plain"}, want: NeedsApproval},
		{name: "no rule", req: req("/a.B/None", "", nil, nil), needs: Needs{}, want: Denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Needs(tt.req); got != tt.needs {
				t.Errorf("Needs = %+v, want %+v", got, tt.needs)
			}
			d := p.Decide(tt.req)
			if d.Outcome != tt.want {
				t.Errorf("Outcome = %s, want %s: %q", d.Outcome, tt.want, d.Reasons)
			}
			if tt.why != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), tt.why) {
				t.Errorf("reasons %q lack %q", d.Reasons, tt.why)
			}
		})
	}
}

func TestParseCasesInputsRejects(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{name: "ticket without open", input: "ticket: {assignee: bob}", want: "line 7: cases[0].request.ticket.open: required"},
		{name: "ticket unknown key", input: "ticket: {open: true, owner: bob}", want: "line 7: cases[0].request.ticket.owner: unknown key"},
		{name: "ticket open not bool", input: "ticket: {open: yes please}", want: "line 7: cases[0].request.ticket.open: must be true or false"},
		{name: "ticket empty error", input: `ticket: {error: ""}`, want: "line 7: cases[0].request.ticket.error: empty"},
		{name: "oncall schedules not a list", input: "oncall: {schedules: {a: b}}", want: "line 7: cases[0].request.oncall.schedules"},
		{name: "oncall unknown key", input: "oncall: {now: true, when: x}", want: "line 7: cases[0].request.oncall.when: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "cases:\n  - name: c\n    request:\n      requester: spiffe://ex.org/person/a\n      scopes: [{method: /a.B/C}]\n      ttl: 1m\n      " +
				tt.input + "\n    expect: {outcome: denied}\n"
			_, err := ParseCases([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseCases error %v, want %q", err, tt.want)
			}
		})
	}
}
