package issuer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// read is an auto-approved balance read of who, made with a CSR when csr
// is set.
func read(t *testing.T, who spiffeid.ID, ttl time.Duration, csr bool) issuer.CreateInput {
	in := issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: ttl}
	if csr {
		in.CSR = csrFor(t, who)
	}
	return in
}

// entriesOf returns the audit entries about request id, in order.
func (e *env) entriesOf(id string) []audit.Entry {
	e.t.Helper()
	var out []audit.Entry
	for i := range e.log.Size() {
		en, err := e.log.Entry(i)
		if err != nil {
			e.t.Fatal(err)
		}
		if en.Subject == id {
			out = append(out, en)
		}
	}
	return out
}

// lastEntryOf returns the last audit entry about request id.
func (e *env) lastEntryOf(id string) audit.Entry {
	e.t.Helper()
	ens := e.entriesOf(id)
	if len(ens) == 0 {
		e.t.Fatalf("no audit entry about %s", id)
	}
	return ens[len(ens)-1]
}

// TestTTLMinimum: a TTL below Config.MinTTL (default 30s) is refused with
// ErrInvalid naming ttl, and nothing is stored or audited; an issuer
// configured with a lower minimum accepts it.
func TestTTLMinimum(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		ttl   time.Duration
		start time.Duration // from now; 0: none
	}{
		{name: "1ns", ttl: time.Nanosecond},
		{name: "1ms", ttl: time.Millisecond},
		{name: "1s", ttl: time.Second},
		{name: "just below", ttl: issuer.DefaultMinTTL - time.Nanosecond},
		{name: "started in the past, too little left", ttl: time.Minute, start: -40 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := e.log.Size()
			in := read(t, dev, tt.ttl, true)
			want := "ttl: "
			if tt.start != 0 {
				in.Start, want = e.clock.Now().Add(tt.start), "start_time: "
			}
			r, _, err := e.is.Create(ctx, dev, in)
			if !isErr(err, issuer.ErrInvalid) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "minimum") {
				t.Fatalf("Create: %v, want ErrInvalid naming %q and the minimum", err, want)
			}
			if r != nil {
				t.Errorf("returned %v", r)
			}
			if list, _, _ := e.is.List(ctx, dev, issuer.ListInput{}); len(list) != 0 {
				t.Errorf("stored %d requests", len(list))
			}
			if grew := e.log.Size() - size; grew != 0 {
				t.Errorf("audit log grew by %d", grew)
			}
		})
	}
	if r := e.create(dev, read(t, dev, issuer.DefaultMinTTL, true)); r.State != issuer.StateIssued {
		t.Errorf("a grant of exactly the minimum is %s, want ISSUED", r.State)
	}

	lower, err := issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(), MinTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := lower.Create(ctx, dev, read(t, dev, 2*time.Second, true))
	if err != nil || r.State != issuer.StateIssued {
		t.Errorf("with MinTTL 1s, a 2s grant: %v, %v; want ISSUED", r, err)
	}
}

// TestUnissuableRequestEnds: an approved request that cannot be issued is
// ended by the sweeper, audited with its cause and notified, instead of
// being retried on every pass: EXPIRED when its end passed before it could
// be issued, REVOKED by the issuer when its certificate cannot be minted.
func TestUnissuableRequestEnds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// An issuer whose CA ends in an hour, over the same store.
	shortCA, err := ca.Generate(ca.Config{TrustDomain: td, Clock: e.clock.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	short, err := issuer.New(issuer.Config{CA: shortCA, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(), OnChange: e.onChange})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		is         *issuer.Issuer
		csr        bool
		start, at  time.Duration // scheduled start, and when the sweeper runs, from now
		wantState  issuer.State
		wantAction audit.Action
		wantKind   notify.Kind
		wantReason string
	}{
		{name: "end passed, with a CSR", is: e.is, csr: true, start: time.Minute, at: 2 * time.Minute,
			wantState: issuer.StateExpired, wantAction: audit.ActionGrantExpired, wantKind: notify.KindExpired, wantReason: "before it could be issued"},
		{name: "end passed, without a CSR", is: e.is, start: time.Minute, at: 2 * time.Minute,
			wantState: issuer.StateExpired, wantAction: audit.ActionGrantExpired, wantKind: notify.KindExpired, wantReason: "before it could be issued"},
		{name: "CA expired", is: short, csr: true, start: 2 * time.Hour, at: 2*time.Hour + time.Second,
			wantState: issuer.StateRevoked, wantAction: audit.ActionGrantRevoked, wantKind: notify.KindRevoked, wantReason: "could not mint its certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := read(t, dev, time.Minute, tt.csr)
			in.Start = e.clock.Now().Add(tt.start)
			r, _, err := tt.is.Create(ctx, dev, in)
			if err != nil || r.State != issuer.StateApproved {
				t.Fatalf("Create: %v, %v; want APPROVED", r, err)
			}
			e.clock.Add(tt.at)
			if err := tt.is.Sweep(ctx); err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			got := e.get(r.ID)
			if got.State != tt.wantState || got.EndCause != issuer.EndUnissuable || got.EndedBy != jitdID.String() || !strings.Contains(got.EndReason, tt.wantReason) {
				t.Errorf("after the sweep: %s, cause %q, ended by %q because %q; want %s, %s, %s, %q",
					got.State, got.EndCause, got.EndedBy, got.EndReason, tt.wantState, issuer.EndUnissuable, jitdID, tt.wantReason)
			}
			en := e.lastEntryOf(r.ID)
			if en.Action != tt.wantAction || en.Subject != r.ID || en.Details["cause"] != issuer.EndUnissuable || en.Details["error"] == "" {
				t.Errorf("last audit entry %s on %s with %v; want %s on %s, cause %s and the error", en.Action, en.Subject, en.Details, tt.wantAction, r.ID, issuer.EndUnissuable)
			}
			cs := e.changesOf(r.ID)
			last := cs[len(cs)-1]
			ev, ok := notify.FromChange(last.r, last.action)
			if !ok || ev.Kind != tt.wantKind || ev.Cause != issuer.EndUnissuable {
				t.Errorf("notification %v (%v), want %s with cause %s", ev, ok, tt.wantKind, issuer.EndUnissuable)
			}
			// Nothing is left to retry.
			n := len(e.entriesOf(r.ID))
			if err := tt.is.Sweep(ctx); err != nil {
				t.Errorf("second Sweep: %v", err)
			}
			if got := len(e.entriesOf(r.ID)); got != n {
				t.Errorf("second Sweep wrote %d entries about the request", got-n)
			}
		})
	}
}

// TestEveryGrantEndAuditedAndNotified: expiry, revocation and a use limit
// reached each end a grant with an audit entry giving its cause, the
// request's EndCause, and a notification carrying it.
func TestEveryGrantEndAuditedAndNotified(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		useLimit   uint32
		end        func(t *testing.T, r *issuer.Request)
		wantState  issuer.State
		wantCause  string
		wantAction audit.Action
		wantKind   notify.Kind
		wantActor  string
	}{
		{
			name: "expiry",
			end: func(t *testing.T, r *issuer.Request) {
				e.clock.Set(r.NotAfter.Add(time.Second))
				if err := e.is.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
			},
			wantState: issuer.StateExpired, wantCause: issuer.EndExpired, wantAction: audit.ActionGrantExpired, wantKind: notify.KindExpired, wantActor: jitdID.String(),
		},
		{
			name: "revocation",
			end: func(t *testing.T, r *issuer.Request) {
				if _, err := e.is.Revoke(ctx, bob, r.ID, "done", 0); err != nil {
					t.Fatal(err)
				}
			},
			wantState: issuer.StateRevoked, wantCause: issuer.EndRevoked, wantAction: audit.ActionGrantRevoked, wantKind: notify.KindRevoked, wantActor: bob.String(),
		},
		{
			name: "use limit", useLimit: 2,
			end: func(t *testing.T, r *issuer.Request) {
				for i, want := range []bool{false, true} {
					rep, err := e.is.ReportUse(ctx, ledger, r.ID, 1)
					if err != nil || rep.Exhausted != want {
						t.Fatalf("use %d: %+v, %v; want exhausted %v", i+1, rep, err, want)
					}
				}
				// The last use is recorded before the end.
				ens := e.entriesOf(r.ID)
				if en := ens[len(ens)-2]; en.Action != audit.ActionGrantUsed || en.Details["total"] != "2" {
					t.Errorf("entry before the end: %s %v; want grant.used with total 2", en.Action, en.Details)
				}
			},
			wantState: issuer.StateRevoked, wantCause: issuer.EndUseLimit, wantAction: audit.ActionGrantRevoked, wantKind: notify.KindRevoked, wantActor: jitdID.String(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := read(t, dev, time.Minute, false)
			in.UseLimit = tt.useLimit
			r := e.create(dev, in)
			if r.State != issuer.StateIssued {
				t.Fatalf("created %s, want ISSUED", r.State)
			}
			tt.end(t, r)
			got := e.get(r.ID)
			if got.State != tt.wantState || got.EndCause != tt.wantCause {
				t.Errorf("request %s, cause %q; want %s, %q", got.State, got.EndCause, tt.wantState, tt.wantCause)
			}
			en := e.lastEntryOf(r.ID)
			if en.Action != tt.wantAction || en.Subject != r.ID || en.Actor != tt.wantActor || en.Details["cause"] != tt.wantCause {
				t.Errorf("last audit entry %s by %s on %s with %v; want %s by %s on %s with cause %s",
					en.Action, en.Actor, en.Subject, en.Details, tt.wantAction, tt.wantActor, r.ID, tt.wantCause)
			}
			var events []notify.Event
			for _, c := range e.changesOf(r.ID) {
				if ev, ok := notify.FromChange(c.r, c.action); ok {
					events = append(events, ev)
				}
			}
			last := events[len(events)-1]
			if last.Kind != tt.wantKind || last.Cause != tt.wantCause || last.State != string(tt.wantState) {
				t.Errorf("last notification %s (cause %q, state %s); want %s, cause %q, state %s", last.Kind, last.Cause, last.State, tt.wantKind, tt.wantCause, tt.wantState)
			}
		})
	}
}
