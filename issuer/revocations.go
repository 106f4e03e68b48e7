package issuer

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Revocation is one revoked grant, kept until the grant would have expired.
type Revocation struct {
	GrantID  string
	NotAfter time.Time
}

// revocations is the issuer's set of revoked, unexpired grants, the streams
// following it (by the stream ID each verifier chose), and the
// acknowledgements awaited for recent revocations.
type revocations struct {
	mu   sync.Mutex
	set  map[string]time.Time
	subs map[chan Revocation]string // channel -> stream ID
	acks map[string]*ackWait        // grant ID -> acknowledgements awaited
}

// ackWait counts the acknowledgements of one revocation by the streams that
// were following when it was made.
type ackWait struct {
	want map[string]bool // stream ID -> acknowledged
	anon int             // following streams without an ID: never acknowledge
	got  int
	done chan struct{} // closed when every stream with an ID acknowledged
}

func newRevocations() *revocations {
	return &revocations{set: make(map[string]time.Time), subs: make(map[chan Revocation]string), acks: make(map[string]*ackWait)}
}

// add records a revocation and hands it to every follower; a follower whose
// buffer is full is dropped (its channel closed) and must reconnect, which
// gives it a full snapshot. When track is set it returns the
// acknowledgements to wait for (the caller must then call wait).
func (rv *revocations) add(r Revocation, track bool) *ackWait {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.set[r.GrantID] = r.NotAfter
	w := &ackWait{want: make(map[string]bool), done: make(chan struct{})}
	for ch, stream := range rv.subs {
		select {
		case ch <- r:
			if stream == "" {
				w.anon++
			} else {
				w.want[stream] = false
			}
		default:
			delete(rv.subs, ch)
			close(ch)
		}
	}
	if len(w.want) == 0 || !track {
		close(w.done)
	} else {
		rv.acks[r.GrantID] = w
	}
	return w
}

// ack records that the verifier behind stream applied the revocations of ids.
func (rv *revocations) ack(stream string, ids []string) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, id := range ids {
		w := rv.acks[id]
		if w == nil {
			continue
		}
		if done, ok := w.want[stream]; ok && !done {
			w.want[stream] = true
			if w.got++; w.got == len(w.want) {
				close(w.done)
				delete(rv.acks, id)
			}
		}
	}
}

// wait waits for w until ctx ends or timeout passes, and returns how many
// streams were following and how many acknowledged.
func (rv *revocations) wait(ctx context.Context, grantID string, w *ackWait, timeout time.Duration) (following, acked int) {
	if timeout > 0 {
		t := time.NewTimer(timeout)
		select {
		case <-w.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.acks[grantID] == w {
		delete(rv.acks, grantID)
	}
	return len(w.want) + w.anon, w.got
}

// follow returns the current set (expired entries dropped) and a channel of
// the revocations that come after it.
func (rv *revocations) follow(now time.Time, stream string) ([]Revocation, chan Revocation) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	out := make([]Revocation, 0, len(rv.set))
	for id, na := range rv.set {
		if now.After(na) {
			delete(rv.set, id)
			continue
		}
		out = append(out, Revocation{GrantID: id, NotAfter: na})
	}
	ch := make(chan Revocation, watcherBuffer)
	rv.subs[ch] = stream
	return out, ch
}

func (rv *revocations) unfollow(ch chan Revocation) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if _, ok := rv.subs[ch]; ok {
		delete(rv.subs, ch)
		close(ch)
	}
}

func (rv *revocations) followers() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.subs)
}

// loadRevocations fills the set from the store at start: every revoked grant
// that has not expired.
func (is *Issuer) loadRevocations(ctx context.Context) error {
	rs, err := is.cfg.Store.Revoked(ctx, is.now())
	if err != nil {
		return err
	}
	for _, r := range rs {
		is.revs.add(r, false)
	}
	return nil
}

// grantEnd is when r's grant ends or would have ended.
func (r *Request) grantEnd() time.Time {
	if !r.NotAfter.IsZero() {
		return r.NotAfter
	}
	start := r.StartTime
	if start.IsZero() {
		start = r.UpdateTime
	}
	return start.Add(r.TTL)
}

// MaxStreamIDLength bounds a verifier's revocation stream ID.
const MaxStreamIDLength = 64

// WatchRevocations calls send with the set of revoked, unexpired grants,
// then with each new revocation, and with an empty heartbeat on every tick
// of heartbeat, until ctx ends or send fails. The caller needs the
// watch_revocations permission; stream identifies the stream in its
// AckRevocations calls ("" when the verifier does not acknowledge).
func (is *Issuer) WatchRevocations(ctx context.Context, caller spiffeid.ID, stream string, heartbeat <-chan time.Time, send func(snapshot bool, rs []Revocation) error) error {
	p, err := is.policy()
	if err != nil {
		return err
	}
	if !p.Allowed(policy.WatchRevocations, caller) {
		return fmt.Errorf("%w: following revocations needs the %s permission", ErrPermission, policy.WatchRevocations)
	}
	if len(stream) > MaxStreamIDLength {
		return fmt.Errorf("%w: stream_id: %d bytes, at most %d", ErrInvalid, len(stream), MaxStreamIDLength)
	}
	set, ch := is.revs.follow(is.now(), stream)
	defer is.revs.unfollow(ch)
	if err := send(true, set); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-is.done:
			return fmt.Errorf("%w: the issuer is shutting down; reconnect", ErrUnavailable)
		case r, ok := <-ch:
			if !ok {
				return fmt.Errorf("%w: revocation follower fell behind; reconnect", ErrState)
			}
			batch := []Revocation{r}
			for len(batch) < 256 {
				select {
				case r, ok := <-ch:
					if !ok {
						return fmt.Errorf("%w: revocation follower fell behind; reconnect", ErrState)
					}
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if err := send(false, batch); err != nil {
				return err
			}
		case <-heartbeat:
			if err := send(false, nil); err != nil {
				return err
			}
		}
	}
}

// UseReport is the issuer's answer to a use report.
type UseReport struct {
	Total, Limit uint32
	Exhausted    bool
}

// MaxUsesPerReport bounds one report.
const MaxUsesPerReport = 1 << 20

// ReportUse records uses of a grant reported by a verifier (a caller with
// the watch_revocations permission) and audits them. When the grant's use
// limit is reached it is revoked, in the same commit and with an audit
// entry of its own (grant.revoked, cause use_limit), and every verifier
// following revocations refuses it from then on.
func (is *Issuer) ReportUse(ctx context.Context, caller spiffeid.ID, id string, uses uint32) (UseReport, error) {
	p, err := is.policy()
	if err != nil {
		return UseReport{}, err
	}
	if !p.Allowed(policy.WatchRevocations, caller) {
		return UseReport{}, fmt.Errorf("%w: reporting uses needs the %s permission", ErrPermission, policy.WatchRevocations)
	}
	if !validID(id) {
		return UseReport{}, fmt.Errorf("%w: grant_id: %q is not a grant ID", ErrInvalid, id)
	}
	if uses == 0 || uses > MaxUsesPerReport {
		return UseReport{}, fmt.Errorf("%w: uses: %d not in [1, %d]", ErrInvalid, uses, MaxUsesPerReport)
	}
	var rep UseReport
	exhaustedNow := false
	r, err := is.changeSteps(ctx, &Request{ID: id}, func(r *Request, s *steps) error {
		switch r.State {
		case StateIssued, StateRevoked, StateExpired:
		default:
			return fmt.Errorf("%w: request %s is %s; it has no grant to use", ErrState, id, r.State)
		}
		r.Uses = min(r.Uses+uses, 1<<32-1)
		rep = UseReport{Total: r.Uses, Limit: r.UseLimit}
		details := map[string]string{"uses": strconv.FormatUint(uint64(uses), 10), "total": strconv.FormatUint(uint64(r.Uses), 10)}
		exhaustedNow = false
		if r.UseLimit > 0 && r.Uses >= r.UseLimit {
			rep.Exhausted = true
			details["exhausted"] = "true"
		}
		s.add(r, record(caller, audit.ActionGrantUsed, details))
		if rep.Exhausted && r.State == StateIssued {
			r.State, r.EndedBy, r.EndReason, r.EndCause = StateRevoked, is.cfg.ID.String(), "use limit reached", EndUseLimit
			exhaustedNow = true
			s.add(r, record(is.cfg.ID, audit.ActionGrantRevoked, map[string]string{
				"cause": EndUseLimit, "reason": r.EndReason, "use_limit": strconv.FormatUint(uint64(r.UseLimit), 10),
				"not_after": r.NotAfter.Format(time.RFC3339),
			}))
		}
		return nil
	})
	if err != nil {
		return UseReport{}, err
	}
	if exhaustedNow {
		is.metrics.revoked.Add(1)
		is.revs.add(Revocation{GrantID: r.ID, NotAfter: r.grantEnd()}, false)
	}
	return rep, nil
}

// AckRevocations records that the verifier behind stream applied the
// revocations of ids. The caller needs the watch_revocations permission.
func (is *Issuer) AckRevocations(caller spiffeid.ID, stream string, ids []string) error {
	p, err := is.policy()
	if err != nil {
		return err
	}
	if !p.Allowed(policy.WatchRevocations, caller) {
		return fmt.Errorf("%w: acknowledging revocations needs the %s permission", ErrPermission, policy.WatchRevocations)
	}
	if stream == "" || len(stream) > MaxStreamIDLength {
		return fmt.Errorf("%w: stream_id: 1 to %d bytes", ErrInvalid, MaxStreamIDLength)
	}
	if len(ids) > watcherBuffer {
		return fmt.Errorf("%w: grant_ids: %d, at most %d", ErrInvalid, len(ids), watcherBuffer)
	}
	is.revs.ack(stream, ids)
	return nil
}
