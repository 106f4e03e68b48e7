package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrCorrupt reports stored audit data that fails its own checks: an entry
// whose hash does not match its contents, a missing tree hash, a stored
// checkpoint that disagrees with the stored tree.
var ErrCorrupt = errors.New("audit: stored log is corrupt")

// keyspace builds the log's keys under its prefix (see the package
// documentation). Numbers are big-endian so that keys sort in sequence order.
type keyspace struct{ prefix []byte }

const (
	kindEntry      = 'e'
	kindTree       = 't'
	kindCheckpoint = 'c'
)

func (k keyspace) key(kind byte, n uint64) []byte {
	b := make([]byte, 0, len(k.prefix)+9)
	b = append(append(b, k.prefix...), kind)
	return binary.BigEndian.AppendUint64(b, n)
}

func (k keyspace) kindPrefix(kind byte) []byte {
	return append(append([]byte(nil), k.prefix...), kind)
}

func (k keyspace) owns(key []byte) bool { return bytes.HasPrefix(key, k.prefix) }

// entryValueVersion starts a stored entry value.
const entryValueVersion = 1

// encodeEntryValue encodes a stored entry: version || prev hash || hash ||
// canonical encoding.
func encodeEntryValue(dst []byte, prev, hash Hash, canonical []byte) []byte {
	dst = append(dst, entryValueVersion)
	dst = append(dst, prev[:]...)
	dst = append(dst, hash[:]...)
	return append(dst, canonical...)
}

// decodeEntryValue decodes a stored entry and checks its hash.
func decodeEntryValue(seq uint64, v []byte) (Entry, error) {
	if len(v) < 1+2*HashSize || v[0] != entryValueVersion {
		return Entry{}, fmt.Errorf("%w: entry %d: bad stored value", ErrCorrupt, seq)
	}
	var prev, hash Hash
	copy(prev[:], v[1:])
	copy(hash[:], v[1+HashSize:])
	canonical := v[1+2*HashSize:]
	e, err := decodeCanonical(canonical)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, seq, err)
	}
	if e.Seq != seq || ChainHash(prev, canonical) != hash {
		return Entry{}, fmt.Errorf("%w: entry %d: contents do not match the stored hash", ErrCorrupt, seq)
	}
	e.PrevHash, e.Hash = prev, hash
	return e, nil
}

// HashSize is the size of a Hash in bytes.
const HashSize = 32

func readEntry(txn *badger.Txn, ks keyspace, seq uint64) (Entry, error) {
	item, err := txn.Get(ks.key(kindEntry, seq))
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	err = item.Value(func(v []byte) error {
		e, err = decodeEntryValue(seq, v)
		return err
	})
	return e, err
}

// readHashes implements tlog.HashReader over the stored tree hashes, taking
// those it can from cache (which may be nil) and adding to it those of its
// levels that it reads from storage.
func readHashes(txn *badger.Txn, ks keyspace, cache *hashCache, indexes []int64) ([]Hash, error) {
	out := make([]Hash, len(indexes))
	var (
		lastRec = ^uint64(0)
		lastVal []byte
	)
	for i, idx := range indexes {
		if idx < 0 {
			return nil, fmt.Errorf("audit: read tree hash %d: negative index", idx)
		}
		if cache != nil {
			level, m := tlog.SplitStoredHashIndex(idx)
			if h, ok := cache.get(level, m); ok {
				out[i] = h
				continue
			}
		}
		rec, level := recordOf(idx)
		if rec != lastRec {
			item, err := txn.Get(ks.key(kindTree, rec))
			if err != nil {
				if errors.Is(err, badger.ErrKeyNotFound) {
					return nil, fmt.Errorf("%w: tree hashes of entry %d are missing", ErrCorrupt, rec)
				}
				return nil, fmt.Errorf("audit: read tree hashes of entry %d: %w", rec, err)
			}
			if lastVal, err = item.ValueCopy(lastVal[:0]); err != nil {
				return nil, fmt.Errorf("audit: read tree hashes of entry %d: %w", rec, err)
			}
			lastRec = rec
		}
		if len(lastVal) != storedHashCount(rec)*HashSize {
			return nil, fmt.Errorf("%w: tree hashes of entry %d have the wrong size", ErrCorrupt, rec)
		}
		copy(out[i][:], lastVal[level*HashSize:])
		if cache != nil && level >= cacheLevel {
			_, m := tlog.SplitStoredHashIndex(idx)
			cache.put(upperHash{level, m, out[i]})
		}
	}
	return out, nil
}

// encodeHashes concatenates hashes.
func encodeHashes(dst []byte, hs []Hash) []byte {
	for _, h := range hs {
		dst = append(dst, h[:]...)
	}
	return dst
}

// lastEntry returns the entry with the highest sequence number.
func lastEntry(txn *badger.Txn, ks keyspace) (e Entry, ok bool, err error) {
	k, v, ok, err := lastUnder(txn, ks.kindPrefix(kindEntry))
	if !ok || err != nil {
		return Entry{}, false, err
	}
	e, err = decodeEntryValue(binary.BigEndian.Uint64(k), v)
	return e, err == nil, err
}

// lastCheckpoint returns the stored checkpoint with the largest size,
// parsed without checking its signature (it is the log's own).
func lastCheckpoint(txn *badger.Txn, ks keyspace) (*Checkpoint, error) {
	k, v, ok, err := lastUnder(txn, ks.kindPrefix(kindCheckpoint))
	if !ok || err != nil {
		return nil, err
	}
	return decodeStoredCheckpoint(binary.BigEndian.Uint64(k), v)
}

func readCheckpoint(txn *badger.Txn, ks keyspace, size uint64) (*Checkpoint, error) {
	item, err := txn.Get(ks.key(kindCheckpoint, size))
	if err != nil {
		return nil, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	return decodeStoredCheckpoint(size, v)
}

func decodeStoredCheckpoint(size uint64, v []byte) (*Checkpoint, error) {
	text, _, ok := bytes.Cut(v, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint %d: not a signed note", ErrCorrupt, size)
	}
	cp, err := parseCheckpointText(string(text) + "\n")
	if err != nil || cp.Size != size {
		return nil, fmt.Errorf("%w: checkpoint %d: %v", ErrCorrupt, size, err)
	}
	cp.Note = v
	return cp, nil
}

// lastUnder returns the last key (with prefix stripped) and value under
// prefix.
func lastUnder(txn *badger.Txn, prefix []byte) (key, val []byte, ok bool, err error) {
	opts := badger.DefaultIteratorOptions
	opts.Reverse = true
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	seek := append(append([]byte(nil), prefix...), bytes.Repeat([]byte{0xff}, 9)...)
	it.Seek(seek)
	if !it.ValidForPrefix(prefix) {
		return nil, nil, false, nil
	}
	item := it.Item()
	key = item.KeyCopy(nil)[len(prefix):]
	if len(key) != 8 {
		return nil, nil, false, fmt.Errorf("%w: unexpected key %q", ErrCorrupt, item.Key())
	}
	if val, err = item.ValueCopy(nil); err != nil {
		return nil, nil, false, err
	}
	return key, val, true, nil
}
