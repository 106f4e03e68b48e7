package audit

import (
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// cacheLevel is the lowest tree level whose hashes the log keeps in memory.
// Proofs need about one hash per level; keeping levels >= 6 in memory (one
// hash per 32 entries on average: 1 MB per million entries) leaves at most
// six, neighboring, hashes to read from Badger per proof.
const cacheLevel = 6

// hashCache holds the stored tree hashes at levels >= cacheLevel. They
// belong to complete subtrees, so they never change once written.
type hashCache struct {
	mu     sync.RWMutex
	levels [][]Hash // levels[i][m] is node (cacheLevel+i, m)
}

type upperHash struct {
	level int
	hash  Hash
}

// uppers returns the hashes of record rec's stored hashes that the cache
// keeps (stored is what fringe.push returned for rec).
func uppers(dst []upperHash, stored []Hash) []upperHash {
	for level := cacheLevel; level < len(stored); level++ {
		dst = append(dst, upperHash{level, stored[level]})
	}
	return dst
}

// add appends newly committed hashes, in commit order.
func (c *hashCache) add(hs []upperHash) {
	if len(hs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hs {
		i := h.level - cacheLevel
		for len(c.levels) <= i {
			c.levels = append(c.levels, nil)
		}
		c.levels[i] = append(c.levels[i], h.hash)
	}
}

func (c *hashCache) get(level int, m int64) (Hash, bool) {
	if level < cacheLevel {
		return Hash{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := level - cacheLevel
	if i >= len(c.levels) || m >= int64(len(c.levels[i])) {
		return Hash{}, false
	}
	return c.levels[i][m], true
}

// load fills the cache for a log of size entries: the records that complete
// a subtree of 2^cacheLevel leaves are one in 64.
func (c *hashCache) load(txn *badger.Txn, ks keyspace, size uint64) error {
	var hs []upperHash
	for rec := uint64(1)<<cacheLevel - 1; rec < size; rec += 1 << cacheLevel {
		item, err := txn.Get(ks.key(kindTree, rec))
		if err != nil {
			return fmt.Errorf("%w: tree hashes of entry %d: %v", ErrCorrupt, rec, err)
		}
		err = item.Value(func(v []byte) error {
			if len(v) != storedHashCount(rec)*HashSize {
				return fmt.Errorf("%w: tree hashes of entry %d have the wrong size", ErrCorrupt, rec)
			}
			for level := cacheLevel; level*HashSize < len(v); level++ {
				hs = append(hs, upperHash{level, Hash(v[level*HashSize:][:HashSize])})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	c.add(hs)
	return nil
}
