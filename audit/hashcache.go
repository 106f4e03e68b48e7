package audit

import (
	"sync"
)

// cacheLevel is the lowest tree level whose hashes the log keeps in memory.
// Proofs need about one hash per level; keeping levels >= 6 in memory (one
// hash per 32 entries on average: 1 MB per million entries) leaves at most
// six, neighboring, hashes to read from Badger per proof.
const cacheLevel = 6

// hashCache holds the stored tree hashes at levels >= cacheLevel that the
// log wrote or read since it opened. They belong to complete subtrees, so
// they never change once written, and a hash read from storage can be kept
// as well as one just written. Opening a log reads none of them: a proof
// fills in the hashes it reads, so the cache grows towards the full set
// with use, at the cost of a few more reads for the first proofs.
type hashCache struct {
	mu     sync.RWMutex
	levels []cachedLevel // levels[i] holds level cacheLevel+i
}

// cachedLevel is one level of the cache: hashes[m] is node (level, m),
// valid where bit m of known is set.
type cachedLevel struct {
	hashes []Hash
	known  []uint64
}

type upperHash struct {
	level int
	m     int64
	hash  Hash
}

// uppers returns the hashes of record rec's stored hashes that the cache
// keeps (stored is what fringe.push returned for rec).
func uppers(dst []upperHash, rec uint64, stored []Hash) []upperHash {
	for level := cacheLevel; level < len(stored); level++ {
		dst = append(dst, upperHash{level, int64(rec+1)>>level - 1, stored[level]})
	}
	return dst
}

// add records committed (or read) hashes.
func (c *hashCache) add(hs []upperHash) {
	if len(hs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hs {
		c.setLocked(h)
	}
}

// put records one hash read from storage.
func (c *hashCache) put(h upperHash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(h)
}

func (c *hashCache) setLocked(h upperHash) {
	i := h.level - cacheLevel
	for len(c.levels) <= i {
		c.levels = append(c.levels, cachedLevel{})
	}
	lv := &c.levels[i]
	if n := int(h.m) + 1; len(lv.hashes) < n {
		// Grow by at least half so that appends stay amortized O(1).
		lv.hashes = append(lv.hashes, make([]Hash, max(n-len(lv.hashes), len(lv.hashes)/2))...)
		lv.known = append(lv.known, make([]uint64, (len(lv.hashes)+63)/64-len(lv.known))...)
	}
	lv.hashes[h.m] = h.hash
	lv.known[h.m/64] |= 1 << (h.m % 64)
}

func (c *hashCache) get(level int, m int64) (Hash, bool) {
	if level < cacheLevel {
		return Hash{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := level - cacheLevel
	if i >= len(c.levels) || m >= int64(len(c.levels[i].hashes)) || c.levels[i].known[m/64]&(1<<(m%64)) == 0 {
		return Hash{}, false
	}
	return c.levels[i].hashes[m], true
}
