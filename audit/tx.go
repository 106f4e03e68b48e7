package audit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Tx is the view of the database that a change function passed to
// Log.Append reads and writes. Reads see everything committed before, the
// changes of the entries committed earlier in the same group, and the
// function's own writes. Writes are buffered: they reach the database only if
// the function returns nil, and then in the same transaction as the function's
// audit entry.
//
// A Tx is valid only during the call of the change function. Keys under the
// audit log's own prefix, and Badger's internal "!badger!" keys, cannot be
// written.
type Tx interface {
	// Get returns a copy of the value of key, or an error matching
	// badger.ErrKeyNotFound.
	Get(key []byte) ([]byte, error)
	// Set buffers a write of value at key.
	Set(key, value []byte) error
	// Delete buffers a deletion of key.
	Delete(key []byte) error
	// Iterate calls fn, in key order, for each key with the given prefix
	// and its value. fn must not keep key or value, nor call Iterate.
	// Returning an error from fn stops the iteration with that error.
	Iterate(prefix []byte, fn func(key, value []byte) error) error
	// Seq returns the sequence number the audit entry will have if this
	// change commits (the first of them, for Log.AppendAll).
	Seq() uint64
}

// ErrTxDone reports use of a Tx after its change function returned.
var ErrTxDone = errors.New("audit: tx used after its change function returned")

// ErrReservedKey reports a write to a key the audit log owns.
var ErrReservedKey = errors.New("audit: key is reserved for the audit log")

// Limits on one key and one value written through a Tx.
const (
	maxKeyLen   = 1 << 10
	maxValueLen = 1 << 20
)

// stage implements Tx over the writer's Badger transaction.
type stage struct {
	txn    *badger.Txn
	ks     keyspace
	seq    uint64
	writes map[string]stagedWrite
	order  []string
	done   bool
}

type stagedWrite struct {
	val []byte
	del bool
}

func (s *stage) check(key []byte, write bool) error {
	if s.done {
		return ErrTxDone
	}
	if len(key) == 0 || len(key) > maxKeyLen {
		return fmt.Errorf("audit: tx: key length %d not in [1, %d]", len(key), maxKeyLen)
	}
	if write && (s.ks.owns(key) || bytes.HasPrefix(key, []byte("!badger!"))) {
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	return nil
}

func (s *stage) Get(key []byte) ([]byte, error) {
	if err := s.check(key, false); err != nil {
		return nil, err
	}
	if w, ok := s.writes[string(key)]; ok {
		if w.del {
			return nil, badger.ErrKeyNotFound
		}
		return slices.Clone(w.val), nil
	}
	item, err := s.txn.Get(key)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (s *stage) put(key []byte, w stagedWrite) {
	if s.writes == nil {
		s.writes = make(map[string]stagedWrite)
	}
	k := string(key)
	if _, ok := s.writes[k]; !ok {
		s.order = append(s.order, k)
	}
	s.writes[k] = w
}

func (s *stage) Set(key, value []byte) error {
	if err := s.check(key, true); err != nil {
		return err
	}
	if len(value) > maxValueLen {
		return fmt.Errorf("audit: tx: value of %d bytes exceeds %d", len(value), maxValueLen)
	}
	s.put(key, stagedWrite{val: bytes.Clone(value)})
	return nil
}

func (s *stage) Delete(key []byte) error {
	if err := s.check(key, true); err != nil {
		return err
	}
	s.put(key, stagedWrite{del: true})
	return nil
}

func (s *stage) Seq() uint64 { return s.seq }

func (s *stage) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	if s.done {
		return ErrTxDone
	}
	var staged []string
	for _, k := range s.order {
		if bytes.HasPrefix([]byte(k), prefix) {
			staged = append(staged, k)
		}
	}
	slices.Sort(staged)
	emit := func(k string) error {
		if w := s.writes[k]; !w.del {
			return fn([]byte(k), w.val)
		}
		return nil
	}

	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := s.txn.NewIterator(opts)
	defer it.Close()
	i := 0
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		key := item.Key()
		for ; i < len(staged) && staged[i] < string(key); i++ {
			if err := emit(staged[i]); err != nil {
				return err
			}
		}
		if i < len(staged) && staged[i] == string(key) {
			if err := emit(staged[i]); err != nil {
				return err
			}
			i++
			continue
		}
		err := item.Value(func(v []byte) error { return fn(key, v) })
		if err != nil {
			return err
		}
	}
	for ; i < len(staged); i++ {
		if err := emit(staged[i]); err != nil {
			return err
		}
	}
	return nil
}

// flush applies the buffered writes to the transaction.
func (s *stage) flush() error {
	for _, k := range s.order {
		var err error
		if w := s.writes[k]; w.del {
			err = s.txn.Delete([]byte(k))
		} else {
			err = s.txn.Set([]byte(k), w.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runChange calls change on s, turning a panic into an error so that one
// bad caller cannot take the writer down.
func runChange(change func(Tx) error, s *stage) (err error) {
	defer func() {
		s.done = true
		if r := recover(); r != nil {
			err = fmt.Errorf("audit: change function panicked: %v", r)
		}
	}()
	return change(s)
}
