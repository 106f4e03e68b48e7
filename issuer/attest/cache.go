package attest

import (
	"errors"
	"os/user"
	"sync"
	"time"
)

// Cache bounds. A cache that fills up is emptied: these bound memory, and
// a real host has far fewer distinct executables and IDs.
const (
	maxCachedHashes = 1024
	maxCachedNames  = 1024
	// racyWindow: a file modified this recently (by the clock) is hashed
	// but not cached, since a second write within the timestamp
	// granularity could leave its key unchanged (git's "racy" files).
	racyWindow = 2 * time.Second
)

// hashCache maps file keys to hex SHA-256 sums.
type hashCache struct {
	mu sync.Mutex
	m  map[fileKey]string
}

func newHashCache() *hashCache { return &hashCache{m: make(map[fileKey]string)} }

// get returns the sum cached for k.
func (c *hashCache) get(k fileKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, ok := c.m[k]
	return sum, ok
}

// put caches sum for k unless the file changed too recently before now. It
// reports whether it did.
func (c *hashCache) put(k fileKey, sum string, now time.Time) bool {
	changed := time.Unix(0, max(k.mtime, k.ctime))
	if now.Sub(changed) < racyWindow {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedHashes {
		clear(c.m)
	}
	c.m[k] = sum
	return true
}

// nameCache caches the names of user or group IDs, including the absence
// of a name, for a TTL.
type nameCache struct {
	find func(id string) (name string, ok bool, err error)
	ttl  time.Duration

	mu sync.Mutex
	m  map[string]cachedName
}

type cachedName struct {
	name    string
	ok      bool
	expires time.Time
}

func newNameCache(find func(string) (string, bool, error), ttl time.Duration) *nameCache {
	return &nameCache{find: find, ttl: ttl, m: make(map[string]cachedName)}
}

// lookup returns the name of id, and whether it has one. Errors other than
// "no such ID" are not cached.
func (c *nameCache) lookup(id string, now time.Time) (string, bool, error) {
	c.mu.Lock()
	e, hit := c.m[id]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.name, e.ok, nil
	}
	name, ok, err := c.find(id)
	if err != nil {
		return "", false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedNames {
		clear(c.m)
	}
	c.m[id] = cachedName{name: name, ok: ok, expires: now.Add(c.ttl)}
	return name, ok, nil
}

// lookupUser returns the name of user ID uid.
func lookupUser(uid string) (string, bool, error) {
	u, err := user.LookupId(uid)
	if errors.As(err, new(user.UnknownUserIdError)) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return u.Username, true, nil
}

// lookupGroup returns the name of group ID gid.
func lookupGroup(gid string) (string, bool, error) {
	g, err := user.LookupGroupId(gid)
	if errors.As(err, new(user.UnknownGroupIdError)) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return g.Name, true, nil
}
