package notify_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/notify"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	alice = "spiffe://example.org/person/alice"
	bob   = "spiffe://example.org/person/bob"
	carol = "spiffe://example.org/person/carol"
)

// request returns a request in state s, changed by set.
func request(s issuer.State, set func(r *issuer.Request)) *issuer.Request {
	r := &issuer.Request{
		ID: "r01j0000000000000000000000", Requester: alice, State: s, Reason: "INC-1",
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/Refund"},
			{Method: "/bank.v1.Ledger/Get", Resources: []string{"accounts/1", "accounts/2"}},
		},
		TTL: time.Hour, CreateTime: t0.Add(-time.Minute), UpdateTime: t0,
	}
	if set != nil {
		set(r)
	}
	return r
}

func TestFromChange(t *testing.T) {
	approved := func(r *issuer.Request) {
		r.Reviews = []issuer.Review{
			{Approver: bob, Approve: true}, {Approver: carol, Approve: false}, {Approver: bob, Approve: true}, {Approver: carol, Approve: true},
		}
	}
	scopes := "/bank.v1.Ledger/Refund /bank.v1.Ledger/Get@accounts/1 /bank.v1.Ledger/Get@accounts/2"
	tests := []struct {
		name      string
		r         *issuer.Request
		action    audit.Action
		want      notify.Kind // "": no event
		wantText  string
		wantCause string
	}{
		{
			name: "created, pending", r: request(issuer.StatePending, nil), action: audit.ActionRequestCreated, want: notify.KindCreated,
			wantText: ":inbox_tray: request r01j0000000000000000000000 by " + alice + " for " + scopes + " awaits review — reason: INC-1",
		},
		{
			name: "created, auto-approved", r: request(issuer.StateApproved, nil), action: audit.ActionRequestCreated, want: notify.KindCreated,
			wantText: ":inbox_tray: request r01j0000000000000000000000 by " + alice + " for " + scopes + " — reason: INC-1",
		},
		{
			name: "break-glass request", r: request(issuer.StateApproved, func(r *issuer.Request) { r.BreakGlass = true }),
			action: audit.ActionBreakGlass, want: notify.KindBreakGlass,
			wantText: ":rotating_light: break-glass request r01j0000000000000000000000 by " + alice + " for " + scopes + " — reason: INC-1",
		},
		{
			name: "approved", r: request(issuer.StateApproved, approved), action: audit.ActionRequestApproved, want: notify.KindDecided,
			wantText: ":white_check_mark: request r01j0000000000000000000000 by " + alice + " approved by " + bob + ", " + carol,
		},
		{name: "approval still pending", r: request(issuer.StatePending, approved), action: audit.ActionRequestApproved},
		{name: "denial that does not end the request", r: request(issuer.StatePending, nil), action: audit.ActionRequestDenied},
		{
			name: "denied", r: request(issuer.StateDenied, func(r *issuer.Request) { r.EndedBy, r.EndReason = bob, "not during the freeze" }),
			action: audit.ActionRequestDenied, want: notify.KindDecided,
			wantText: ":x: request r01j0000000000000000000000 by " + alice + " denied by " + bob + " — not during the freeze",
		},
		{
			name: "canceled", r: request(issuer.StateCanceled, func(r *issuer.Request) { r.EndedBy = alice }),
			action: audit.ActionRequestCanceled, want: notify.KindDecided,
			wantText: ":heavy_minus_sign: request r01j0000000000000000000000 by " + alice + " canceled by " + alice,
		},
		{
			name: "timed out", r: request(issuer.StateTimedOut, nil), action: audit.ActionRequestTimedOut, want: notify.KindDecided,
			wantText: ":hourglass: request r01j0000000000000000000000 by " + alice + " timed out awaiting review",
		},
		{
			name: "issued", r: request(issuer.StateIssued, func(r *issuer.Request) { r.NotAfter = t0.Add(time.Hour) }),
			action: audit.ActionGrantIssued, want: notify.KindIssued,
			wantText: ":key: grant r01j0000000000000000000000 issued to " + alice + " for " + scopes + " until 2030-01-02T04:04:05Z — reason: INC-1",
		},
		{
			name: "break-glass grant issued",
			r: request(issuer.StateIssued, func(r *issuer.Request) {
				r.BreakGlass, r.NotAfter, r.Scopes = true, t0.Add(time.Hour), r.Scopes[:1]
			}),
			action: audit.ActionGrantIssued, want: notify.KindIssued,
			wantText: ":rotating_light: break-glass grant r01j0000000000000000000000 issued to " + alice + " for /bank.v1.Ledger/Refund until 2030-01-02T04:04:05Z — reason: INC-1",
		},
		{
			name: "revoked", r: request(issuer.StateRevoked, func(r *issuer.Request) { r.EndedBy, r.EndReason, r.EndCause = carol, "done", issuer.EndRevoked }),
			action: audit.ActionGrantRevoked, want: notify.KindRevoked, wantCause: issuer.EndRevoked,
			wantText: ":no_entry_sign: grant r01j0000000000000000000000 of " + alice + " revoked by " + carol + " — done",
		},
		{
			name: "use limit reached",
			r: request(issuer.StateRevoked, func(r *issuer.Request) {
				r.EndedBy, r.EndReason, r.EndCause = "spiffe://example.org/jitd", "use limit reached", issuer.EndUseLimit
			}),
			action: audit.ActionGrantRevoked, want: notify.KindRevoked, wantCause: issuer.EndUseLimit,
			wantText: ":no_entry_sign: grant r01j0000000000000000000000 of " + alice + " revoked by spiffe://example.org/jitd — use limit reached",
		},
		{
			name: "grant expiring", r: request(issuer.StateIssued, func(r *issuer.Request) { r.NotAfter, r.ExpiringNotified = t0.Add(5*time.Minute), t0.Add(5*time.Minute) }),
			action: audit.ActionGrantExpiring, want: notify.KindExpiring,
			wantText: ":hourglass_flowing_sand: grant r01j0000000000000000000000 of " + alice + " for " + scopes + " expires at 2030-01-02T03:09:05Z",
		},
		{
			name: "grant expired", r: request(issuer.StateExpired, func(r *issuer.Request) { r.EndCause = issuer.EndExpired }),
			action: audit.ActionGrantExpired, want: notify.KindExpired, wantCause: issuer.EndExpired,
			wantText: ":stopwatch: grant r01j0000000000000000000000 of " + alice + " expired",
		},
		{
			name: "not issued before its end",
			r: request(issuer.StateExpired, func(r *issuer.Request) {
				r.EndedBy, r.EndReason, r.EndCause = "spiffe://example.org/jitd", "not issued: its end came first", issuer.EndUnissuable
			}),
			action: audit.ActionGrantExpired, want: notify.KindExpired, wantCause: issuer.EndUnissuable,
			wantText: ":stopwatch: grant r01j0000000000000000000000 of " + alice + " expired — not issued: its end came first",
		},
		{
			name: "reason cannot ping or link", r: request(issuer.StatePending, func(r *issuer.Request) { r.Reason = "<!channel> see <https://evil|docs> & co\tnow" }),
			action: audit.ActionRequestCreated, want: notify.KindCreated,
			wantText: ":inbox_tray: request r01j0000000000000000000000 by " + alice + " for " + scopes + " awaits review — reason: &lt;!channel&gt; see &lt;https://evil|docs&gt; &amp; co now",
		},
		{
			name: "break-glass reviewed: approved", r: request(issuer.StateExpired, func(r *issuer.Request) {
				r.BreakGlass, r.ReviewVerdict = true, issuer.VerdictApproved
				r.Reviews = []issuer.Review{{Approver: bob, Approve: true}}
			}),
			action: audit.ActionGrantReviewed, want: notify.KindReviewed,
			wantText: ":white_check_mark: break-glass grant r01j0000000000000000000000 of " + alice + " reviewed: approved by " + bob,
		},
		{
			name: "break-glass reviewed: denied", r: request(issuer.StateIssued, func(r *issuer.Request) {
				r.BreakGlass, r.ReviewVerdict = true, issuer.VerdictDenied
				r.Reviews = []issuer.Review{{Approver: bob, Approve: true}, {Approver: carol, Comment: "no incident"}}
			}),
			action: audit.ActionGrantReviewed, want: notify.KindReviewed,
			wantText: ":x: break-glass grant r01j0000000000000000000000 of " + alice + " reviewed: denied by " + carol + " — no incident",
		},
		// Each review of a break-glass grant after the fact is no decision:
		// only its conclusion (grant.reviewed) is an event.
		{name: "break-glass review", r: request(issuer.StateIssued, func(r *issuer.Request) { r.BreakGlass = true }), action: audit.ActionRequestApproved},
		{name: "break-glass denial", r: request(issuer.StateRevoked, func(r *issuer.Request) { r.BreakGlass = true }), action: audit.ActionRequestDenied},
		{name: "grant used", r: request(issuer.StateIssued, nil), action: audit.ActionGrantUsed},
		{name: "grant fetched", r: request(issuer.StateIssued, nil), action: audit.ActionGrantFetched},
		{name: "policy loaded", r: &issuer.Request{}, action: audit.ActionPolicyLoaded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok := notify.FromChange(tt.r, tt.action)
			if ok != (tt.want != "") {
				t.Fatalf("FromChange(%s, %s) = %v, %v; want an event: %v", tt.r.State, tt.action, ev, ok, tt.want != "")
			}
			if !ok {
				return
			}
			if ev.Kind != tt.want || ev.Text != tt.wantText || ev.Cause != tt.wantCause {
				t.Errorf("FromChange = %s %q cause %q\nwant %s %q cause %q", ev.Kind, ev.Text, ev.Cause, tt.want, tt.wantText, tt.wantCause)
			}
			if len(ev.ID) != 26 || !ev.Time.Equal(t0) || ev.RequestID != tt.r.ID || ev.State != string(tt.r.State) || ev.BreakGlass != tt.r.BreakGlass {
				t.Errorf("FromChange = %+v: wrong ID, Time, RequestID, State or BreakGlass", ev)
			}
		})
	}
	a, _ := notify.FromChange(request(issuer.StatePending, nil), audit.ActionRequestCreated)
	b, _ := notify.FromChange(request(issuer.StatePending, nil), audit.ActionRequestCreated)
	if a.ID == b.ID {
		t.Errorf("two events share the ID %s", a.ID)
	}
}

// TestEventJSON pins the body's field names: receivers depend on them.
func TestEventJSON(t *testing.T) {
	r := request(issuer.StateIssued, func(r *issuer.Request) {
		r.NotAfter, r.BreakGlass, r.Scopes = t0.Add(time.Hour), true, r.Scopes[:1]
		r.Reviews = []issuer.Review{{Approver: bob, Approve: true}}
	})
	ev, _ := notify.FromChange(r, audit.ActionGrantIssued)
	ev.ID = "evt"
	got, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt","kind":"issued","time":"2030-01-02T03:04:05Z","request_id":"r01j0000000000000000000000",` +
		`"requester":"spiffe://example.org/person/alice","state":"ISSUED","reason":"INC-1","scopes":["/bank.v1.Ledger/Refund"],` +
		`"approvers":["spiffe://example.org/person/bob"],"not_after":"2030-01-02T04:04:05Z","break_glass":true,` +
		`"text":":rotating_light: break-glass grant r01j0000000000000000000000 issued to spiffe://example.org/person/alice for /bank.v1.Ledger/Refund until 2030-01-02T04:04:05Z — reason: INC-1"}`
	if string(got) != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
}
