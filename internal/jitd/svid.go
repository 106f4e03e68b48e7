package jitd

import (
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// rotatingSVID is jitd's own serving X.509-SVID: minted on first use and
// again once half its life is gone, so a long-running jitd never serves an
// expired certificate. It implements x509svid.Source.
type rotatingSVID struct {
	ca    *ca.CA
	id    spiffeid.ID
	ttl   time.Duration
	clock func() time.Time

	mu   sync.Mutex
	svid *x509svid.SVID
	renw time.Time // when to mint the next one
}

func newRotatingSVID(c *ca.CA, id spiffeid.ID, ttl time.Duration, clock func() time.Time) *rotatingSVID {
	return &rotatingSVID{ca: c, id: id, ttl: ttl, clock: clock}
}

// GetX509SVID implements x509svid.Source.
func (r *rotatingSVID) GetX509SVID() (*x509svid.SVID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if r.svid != nil && now.Before(r.renw) {
		return r.svid, nil
	}
	svid, err := r.ca.Mint(ca.Request{ID: r.id, TTL: r.ttl})
	if err != nil {
		if r.svid != nil && now.Before(r.svid.Certificates[0].NotAfter) {
			return r.svid, nil // keep serving the current one; the next call retries
		}
		return nil, err
	}
	leaf := svid.Certificates[0]
	r.svid, r.renw = svid, leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)
	return svid, nil
}
