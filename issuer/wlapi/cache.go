package wlapi

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// svid is one minted X.509-SVID in the form the Workload API sends. It is
// immutable: a rotation makes a new one, so that streams compare sets by
// pointer.
type svid struct {
	id       spiffeid.ID
	hint     string
	chain    []byte // DER certificates, leaf first, concatenated
	key      []byte // PKCS#8 DER
	notAfter time.Time
	renewAt  time.Time // when a new one replaces it: rotation, or the grant's end
}

// slot holds the current SVID of one cache key; its lock makes concurrent
// streams wait for one mint instead of minting one each.
type slot struct {
	mu  sync.Mutex
	cur *svid
}

// cache keeps minted SVIDs in memory: identities under "id/<SPIFFE ID>/<TTL>",
// grants under "grant/<grant ID>".
type cache struct {
	mu    sync.Mutex
	slots map[string]*slot
}

func newCache() *cache { return &cache{slots: make(map[string]*slot)} }

// get returns the SVID under key, minting a new one when there is none or
// now has reached its renewAt.
func (c *cache) get(key string, now time.Time, mint func() (*svid, error)) (*svid, error) {
	c.mu.Lock()
	sl, ok := c.slots[key]
	if !ok {
		sl = &slot{}
		c.slots[key] = sl
	}
	c.mu.Unlock()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.cur != nil && now.Before(sl.cur.renewAt) {
		return sl.cur, nil
	}
	s, err := mint()
	if err != nil {
		return nil, err
	}
	sl.cur = s
	return s, nil
}

// drop forgets the SVID under key, so that its key leaves memory.
func (c *cache) drop(key string) {
	c.mu.Lock()
	delete(c.slots, key)
	c.mu.Unlock()
}

// prune forgets every SVID that has expired at now.
func (c *cache) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, sl := range c.slots {
		if sl.mu.TryLock() {
			if sl.cur != nil && !now.Before(sl.cur.notAfter) {
				delete(c.slots, k)
			}
			sl.mu.Unlock()
		}
	}
}

func identityKey(id spiffeid.ID, ttl time.Duration) string {
	return "id/" + id.String() + "/" + ttl.String()
}

func grantKey(id string) string { return "grant/" + id }

// encode returns chain and key as the Workload API carries them.
func encode(chain []*x509.Certificate, key crypto.Signer) (der, pkcs8 []byte, err error) {
	for _, c := range chain {
		der = append(der, c.Raw...)
	}
	pkcs8, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("wlapi: encoding the SVID key: %w", err)
	}
	return der, pkcs8, nil
}
