package issuer

import (
	"sync"
	"time"
)

// publishOrder keeps what follows a commit (the issued index, watchers,
// metrics, notifications) in version order per request. Two changes of one
// request commit in order, but the goroutines that made them may report
// them in either order: the sweeper issuing a scheduled grant right after a
// reviewer approved it, or a revocation right after issuance. A report
// older than one already made is dropped.
//
// It remembers the last version reported of every request that is live
// (pending, approved or issued), and of an ended one for endedGrace after it
// ended, long enough for any late report of an older version to arrive.
type publishOrder struct {
	mu    sync.Mutex
	seen  map[string]seenVersion
	calls int
}

type seenVersion struct {
	version uint64
	forget  time.Time // zero while the request is live
}

// endedGrace is how long an ended request's version is remembered.
const endedGrace = time.Minute

func newPublishOrder() *publishOrder { return &publishOrder{seen: make(map[string]seenVersion)} }

// admit reports whether r is newer than every version of it reported
// before, and records it.
func (o *publishOrder) admit(r *Request, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.seen[r.ID]; ok && s.version >= r.Version {
		return false
	}
	s := seenVersion{version: r.Version}
	if r.State.Final() {
		s.forget = now.Add(endedGrace)
	}
	o.seen[r.ID] = s
	if o.calls++; o.calls%1024 == 0 {
		o.pruneLocked(now)
	}
	return true
}

// pruneLocked forgets ended requests whose grace has passed.
func (o *publishOrder) pruneLocked(now time.Time) {
	for id, s := range o.seen {
		if !s.forget.IsZero() && now.After(s.forget) {
			delete(o.seen, id)
		}
	}
}
