package issuer

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ActiveGrants returns the grants of the workload id that are in force now:
// its requests in state ISSUED whose end lies after the issuer's clock,
// oldest first (by creation time, then ID), so that the order is the same on
// every call. The SPIFFE Workload API server hands out those made without a
// CSR after the workload's identity SVID (a CSR grant's key stays with its
// requester). Grants the sweeper has not yet marked
// EXPIRED are left out once their end has passed. It answers from the
// issuer's in-memory index of issued grants, not from the store: a
// workload's request history, and the deleted index keys Badger keeps until
// compaction, would make every push cost more than the last.
func (is *Issuer) ActiveGrants(_ context.Context, id spiffeid.ID) ([]*Request, error) {
	now := is.now()
	out := is.issued.of(id.String(), now)
	slices.SortFunc(out, func(a, b *Request) int {
		if c := a.CreateTime.Compare(b.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// issuedIndex holds the issued grants by requester, kept current by every
// committed change and loaded from the store at start.
type issuedIndex struct {
	mu    sync.RWMutex
	byReq map[string]map[string]*Request
}

func newIssuedIndex() *issuedIndex { return &issuedIndex{byReq: make(map[string]map[string]*Request)} }

// update records r's state after a committed change.
func (x *issuedIndex) update(r *Request) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.byReq[r.Requester]
	if r.State == StateIssued {
		if m == nil {
			m = make(map[string]*Request)
			x.byReq[r.Requester] = m
		}
		m[r.ID] = r
		return
	}
	if m != nil {
		delete(m, r.ID)
		if len(m) == 0 {
			delete(x.byReq, r.Requester)
		}
	}
}

// get returns requester's issued grant id, or nil when the index does not
// hold it (another requester's, not issued, or unknown).
func (x *issuedIndex) get(requester, id string) *Request {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byReq[requester][id]
}

// count returns the number of issued grants.
func (x *issuedIndex) count() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for _, m := range x.byReq {
		n += len(m)
	}
	return n
}

// of returns requester's issued grants that end after now.
func (x *issuedIndex) of(requester string, now time.Time) []*Request {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []*Request
	for _, r := range x.byReq[requester] {
		if now.Before(r.NotAfter) {
			out = append(out, r)
		}
	}
	return out
}

// loadLive fills the issued index and the requests gauge from the store at
// start, and arms the timers of the expiring notices still to send.
func (is *Issuer) loadLive(ctx context.Context) error {
	before := ""
	for {
		q := Query{States: []State{StatePending, StateApproved, StateIssued}, Before: before, Limit: MaxPageSize}
		page, next, err := is.cfg.Store.List(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range page {
			is.issued.update(r)
			is.metrics.track(r)
			is.armExpiring(r)
		}
		if next == "" {
			return nil
		}
		before = next
	}
}

// Changes subscribes to every committed change of any request and returns
// the channel the changed requests arrive on and a function that ends the
// subscription (and closes the channel). The caller must drain the channel
// promptly: a subscriber that falls behind is dropped and its channel
// closed, after which it must call Changes again and reread what it needs.
// Changes is for in-process consumers such as the Workload API server; it
// applies no authorization.
func (is *Issuer) Changes() (<-chan *Request, func()) {
	sub := is.hub.subscribe()
	return sub.ch, func() { is.hub.unsubscribe(sub) }
}
