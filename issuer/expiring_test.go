package issuer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// issueRefund creates a refund request of ttl and has it approved, and
// returns the issued grant.
func (e *env) issueRefund(t *testing.T, ttl time.Duration) *issuer.Request {
	t.Helper()
	in := refund(t, dev)
	in.TTL = ttl
	r := e.create(dev, in)
	for _, who := range []spiffeid.ID{alice, bob} {
		if _, err := e.review(who, r.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	r = e.get(r.ID)
	if r.State != issuer.StateIssued {
		t.Fatalf("request %s, want ISSUED", r.State)
	}
	return r
}

// sweep runs one sweep at the clock's time.
func (e *env) sweep(t *testing.T) {
	t.Helper()
	if err := e.is.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// expiringNotices returns the not_after detail of every grant.expiring
// entry of request id, in order: the ends it was sent for.
func (e *env) expiringNotices(id string) []string {
	var out []string
	for _, en := range e.entriesOf(id) {
		if en.Action == audit.ActionGrantExpiring {
			out = append(out, en.Details["not_after"])
		}
	}
	return out
}

// expiringEvents returns the webhook events OnChange gave for request id
// of kind expiring.
func (e *env) expiringEvents(id string) []notify.Event {
	var out []notify.Event
	for _, c := range e.changesOf(id) {
		if ev, ok := notify.FromChange(c.r, c.action); ok && ev.Kind == notify.KindExpiring {
			out = append(out, ev)
		}
	}
	return out
}

// TestExpiringNotice: an issued grant gets one expiring notice (audit
// entry, webhook event, ExpiringNotified) at its end less the lead time,
// not before, not twice (another sweep, a restart), and a new one when
// its end moves; a grant that ends first, one shorter than the lead time,
// and any grant with notices off get none. Time moves by the fake clock
// and each step is one sweep.
func TestExpiringNotice(t *testing.T) {
	const lead = issuer.DefaultExpiringLead
	tests := []struct {
		name string
		lead time.Duration // Config.ExpiringLead
		ttl  time.Duration
		// run moves time and acts on the grant r; it returns the ends the
		// notices must have been sent for, in order.
		run func(t *testing.T, e *env, r *issuer.Request) []time.Time
	}{
		{
			name: "once at end less lead, not again", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(-lead - time.Second))
				e.sweep(t)
				if n := e.expiringNotices(r.ID); len(n) != 0 {
					t.Errorf("notices %v a second before end less lead", n)
				}
				e.clock.Set(r.NotAfter.Add(-lead))
				e.sweep(t)
				e.clock.Add(time.Minute)
				e.sweep(t)
				return []time.Time{r.NotAfter}
			},
		},
		{
			name: "not again after a restart", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(-lead + time.Second))
				e.sweep(t)
				e.close()
				e.open()
				e.sweep(t)
				e.clock.Add(time.Minute)
				e.sweep(t)
				return []time.Time{r.NotAfter}
			},
		},
		{
			name: "sent after a restart that missed it", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.close()
				e.clock.Set(r.NotAfter.Add(-time.Minute)) // down across the notice time
				e.open()
				e.sweep(t)
				return []time.Time{r.NotAfter}
			},
		},
		{
			name: "none for a revoked grant", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				if _, err := e.is.Revoke(context.Background(), bob, r.ID, "done", 0); err != nil {
					t.Fatal(err)
				}
				e.clock.Set(r.NotAfter.Add(-time.Minute))
				e.sweep(t)
				return nil
			},
		},
		{
			name: "none once the end has passed", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(time.Second)) // no sweep in the last five minutes
				e.sweep(t)
				if s := e.get(r.ID).State; s != issuer.StateExpired {
					t.Errorf("state %s, want EXPIRED", s)
				}
				return nil
			},
		},
		{
			name: "none for a grant shorter than the lead", ttl: 4 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				for range 4 {
					e.clock.Add(time.Minute)
					e.sweep(t)
				}
				return nil
			},
		},
		{
			name: "none with notices off", lead: -1, ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(-time.Minute))
				e.sweep(t)
				return nil
			},
		},
		{
			name: "a lead of its own", lead: 2 * time.Minute, ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(-lead))
				e.sweep(t)
				if n := e.expiringNotices(r.ID); len(n) != 0 {
					t.Errorf("notices %v five minutes before the end, lead 2m", n)
				}
				e.clock.Set(r.NotAfter.Add(-2 * time.Minute))
				e.sweep(t)
				return []time.Time{r.NotAfter}
			},
		},
		{
			// Extending a grant is a later item; its end moving is
			// simulated through the store, as that change would commit it:
			// a new NotAfter and the notice planned for it.
			name: "a new notice for a new end", ttl: 10 * time.Minute,
			run: func(t *testing.T, e *env, r *issuer.Request) []time.Time {
				e.clock.Set(r.NotAfter.Add(-lead))
				e.sweep(t)
				prev := e.get(r.ID)
				next := *prev
				next.NotAfter = prev.NotAfter.Add(10 * time.Minute)
				next.ExpiringAt = next.NotAfter.Add(-lead)
				next.Version++
				rec := audit.Record{Actor: jitdID.String(), Action: audit.ActionGrantIssued, Subject: r.ID}
				if err := e.store.Put(context.Background(), prev, &next, rec); err != nil {
					t.Fatal(err)
				}
				e.close() // the issuer reads the moved end at start
				e.open()
				e.clock.Set(prev.NotAfter.Add(time.Minute)) // past the old end, not yet the new notice
				e.sweep(t)
				if n := e.expiringNotices(r.ID); len(n) != 1 {
					t.Errorf("notices %v before the new end's notice time", n)
				}
				e.clock.Set(next.ExpiringAt)
				e.sweep(t)
				e.sweep(t)
				return []time.Time{prev.NotAfter, next.NotAfter}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.lead != 0 {
				e.expiringLead = tt.lead
				e.close()
				e.open()
			}
			r := e.issueRefund(t, tt.ttl)
			want := tt.run(t, e, r)
			var wantEnds []string
			for _, end := range want {
				wantEnds = append(wantEnds, end.Format(time.RFC3339))
			}
			if got := e.expiringNotices(r.ID); !slices.Equal(got, wantEnds) {
				t.Errorf("grant.expiring entries for ends %v; want %v", got, wantEnds)
			}
			got := e.get(r.ID)
			if len(want) > 0 && !got.ExpiringNotified.Equal(want[len(want)-1]) {
				t.Errorf("ExpiringNotified %v; want %v", got.ExpiringNotified, want[len(want)-1])
			}
			if len(want) == 0 && !got.ExpiringNotified.IsZero() {
				t.Errorf("ExpiringNotified %v; want none", got.ExpiringNotified)
			}
			// Each notice committed is one webhook event, for its end.
			// (Those of an issuer before a restart are in e.changes too.)
			evs := e.expiringEvents(r.ID)
			if len(evs) != len(want) {
				t.Fatalf("%d expiring events; want %d", len(evs), len(want))
			}
			for i, ev := range evs {
				if !ev.NotAfter.Equal(want[i]) || ev.State != string(issuer.StateIssued) {
					t.Errorf("event %d: %s %s until %v; want ISSUED until %v", i, ev.Kind, ev.State, ev.NotAfter, want[i])
				}
			}
		})
	}
}

// TestExpiringNoticeWithoutSweep shows that the expiring notice is sent at
// its time by the issuer's own timer, not only by the sweeper's next pass.
func TestExpiringNoticeWithoutSweep(t *testing.T) {
	e := newEnv(t)
	// The timer runs on real time; the issuer's clock must agree.
	c, err := ca.Generate(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	e.is, err = issuer.New(issuer.Config{
		CA: c, Store: e.store, Policies: e.policies, ID: jitdID, Logger: quiet(), OnChange: e.onChange,
		MinTTL: time.Second, ExpiringLead: 9 * time.Second, // due within a second of issuance, 8s before the end
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.issueRefund(t, 10*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for e.get(r.ID).ExpiringNotified.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no expiring notice without a sweep; request %+v", e.get(r.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.expiringNotices(r.ID); len(got) != 1 || got[0] != r.NotAfter.Format(time.RFC3339) {
		t.Errorf("grant.expiring entries for ends %v; want one for %v", got, r.NotAfter)
	}
}
