package issuer

import (
	"context"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ActiveGrants returns the grants of the workload id that are in force now:
// its requests in state ISSUED whose end lies after the issuer's clock,
// oldest first (by creation time, then ID), so that the order is the same on
// every call. It is what the SPIFFE Workload API server hands out after the
// workload's identity SVID. Grants the sweeper has not yet marked
// EXPIRED are left out once their end has passed.
func (is *Issuer) ActiveGrants(ctx context.Context, id spiffeid.ID) ([]*Request, error) {
	now := is.now()
	q := Query{States: []State{StateIssued}, Requester: id.String(), Limit: MaxPageSize}
	var out []*Request
	for {
		page, next, err := is.cfg.Store.List(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if r.State == StateIssued && now.Before(r.NotAfter) {
				out = append(out, r)
			}
		}
		if next == "" {
			break
		}
		q.Before = next
	}
	// List returns newest first; the order must not change between calls.
	slices.SortFunc(out, func(a, b *Request) int {
		if c := a.CreateTime.Compare(b.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
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
