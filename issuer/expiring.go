package issuer

import (
	"context"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/audit"
)

// DefaultExpiringLead is Config.ExpiringLead's default.
const DefaultExpiringLead = 5 * time.Minute

// The expiring notice, once per grant per end:
//
//   - When a grant is issued (and, once grants can be extended, whenever
//     its end moves), planExpiring sets Request.ExpiringAt to
//     Config.ExpiringLead before its end, or leaves it zero when that is
//     not after now: a grant that lasts no longer than the lead time gets
//     no notice, since its issued event already says when it ends.
//   - Until the notice is sent, the request's deadline (Request.Due) is
//     ExpiringAt, so that the sweeper finds it then; a timer armed when the
//     change is committed sends it on time without waiting for a sweep.
//   - Sending it is a state change like any other: ExpiringNotified is set
//     to the end it was sent for, committed with a grant.expiring audit
//     entry, and then watchers see the request and webhooks get the
//     expiring event. The stored field is what keeps a restart, a second
//     timer or a sweep racing the timer from sending it twice; a new end
//     (an extension) differs from ExpiringNotified and is due its own.
//   - A grant that ends first (revoked, used up, expired) gets none.

// planExpiring sets when the expiring notice of r's current end is due,
// as of now.
func (is *Issuer) planExpiring(r *Request, now time.Time) {
	r.ExpiringAt = time.Time{}
	if is.cfg.ExpiringLead <= 0 {
		return
	}
	if at := r.NotAfter.Add(-is.cfg.ExpiringLead); at.After(now) {
		r.ExpiringAt = at
	}
}

// expiringPending reports whether r is an issued grant whose expiring
// notice for its current end is planned and not yet sent.
func (r *Request) expiringPending() bool {
	return r.State == StateIssued && !r.ExpiringAt.IsZero() && r.ExpiringAt.Before(r.NotAfter) &&
		!r.ExpiringNotified.Equal(r.NotAfter)
}

// notifyExpiring sends the expiring notice of the grant known if it is due
// and not yet sent: it records the end it is sent for and commits that
// with its grant.expiring entry, which OnChange turns into the webhook.
// Nothing happens when the notice is not due, was sent, or the grant has
// ended (or its end has come: expiry follows).
func (is *Issuer) notifyExpiring(ctx context.Context, known *Request) error {
	_, err := is.changeFrom(ctx, known, func(r *Request) (audit.Record, error) {
		now := is.now()
		if !r.expiringPending() || now.Before(r.ExpiringAt) || !now.Before(r.NotAfter) {
			return audit.Record{}, errSkip
		}
		r.ExpiringNotified = r.NotAfter
		return record(is.cfg.ID, audit.ActionGrantExpiring, map[string]string{
			"not_after": r.NotAfter.Format(time.RFC3339),
			"lead":      r.NotAfter.Sub(r.ExpiringAt).String(),
		}), nil
	})
	return skipOK(err)
}

// expiringTimers remembers, per grant, the notice time a timer is armed
// for, so that the many changes of one grant (uses reported, reviews) arm
// one timer per notice.
type expiringTimers struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newExpiringTimers() *expiringTimers {
	return &expiringTimers{at: make(map[string]time.Time)}
}

// arm reports whether a timer for id at t is to be started, and records it.
func (et *expiringTimers) arm(id string, t time.Time) bool {
	et.mu.Lock()
	defer et.mu.Unlock()
	if prev, ok := et.at[id]; ok && prev.Equal(t) {
		return false
	}
	et.at[id] = t
	return true
}

// disarm forgets id's timer at t (any timer when t is zero).
func (et *expiringTimers) disarm(id string, t time.Time) {
	et.mu.Lock()
	defer et.mu.Unlock()
	if prev, ok := et.at[id]; ok && (t.IsZero() || prev.Equal(t)) {
		delete(et.at, id)
	}
}

// armExpiring sends r's expiring notice when it is due, without waiting
// for the sweeper's next pass (which still sends it if this wake-up is
// lost, for instance across a restart, and sends one already due). Like issueAtStart, the timer runs
// on real time and notifyExpiring decides by the issuer's clock.
func (is *Issuer) armExpiring(r *Request) {
	if !r.expiringPending() {
		if r.State.Final() {
			is.armed.disarm(r.ID, time.Time{})
		}
		return
	}
	id, at := r.ID, r.ExpiringAt
	wait := at.Sub(is.now())
	if wait <= 0 || !is.armed.arm(id, at) {
		return // due already (the sweeper sends it on its next pass), or armed
	}
	time.AfterFunc(wait, func() {
		is.armed.disarm(id, at)
		select {
		case <-is.done:
			return
		default:
		}
		if err := is.notifyExpiring(context.Background(), &Request{ID: id}); err != nil {
			is.cfg.Logger.Error("issuer: sending the expiring notice", "request", id, "error", err)
		}
	})
}
