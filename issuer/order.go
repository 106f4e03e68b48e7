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
	seen  map[string]uint64 // request ID -> last version reported
	ended []endedVersion    // ended requests, oldest first, to forget
}

type endedVersion struct {
	id      string
	version uint64
	forget  time.Time
}

// endedGrace is how long an ended request's version is remembered.
const endedGrace = time.Minute

func newPublishOrder() *publishOrder { return &publishOrder{seen: make(map[string]uint64)} }

// admit reports whether r is newer than every version of it reported
// before, and records it.
func (o *publishOrder) admit(r *Request, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pruneLocked(now)
	if v, ok := o.seen[r.ID]; ok && v >= r.Version {
		return false
	}
	o.seen[r.ID] = r.Version
	if r.State.Final() {
		o.ended = append(o.ended, endedVersion{id: r.ID, version: r.Version, forget: now.Add(endedGrace)})
	}
	return true
}

// pruneLocked forgets ended requests whose grace has passed: the oldest
// first, so that each admit does a little of the work.
func (o *publishOrder) pruneLocked(now time.Time) {
	for len(o.ended) > 0 && now.After(o.ended[0].forget) {
		e := o.ended[0]
		if o.seen[e.id] == e.version {
			delete(o.seen, e.id)
		}
		o.ended[0] = endedVersion{}
		o.ended = o.ended[1:]
	}
}
