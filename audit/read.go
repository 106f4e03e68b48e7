package audit

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// Size returns the number of committed entries.
func (l *Log) Size() uint64 { return l.size.Load() }

// Entry returns the committed entry with sequence number seq.
func (l *Log) Entry(seq uint64) (Entry, error) {
	if seq >= l.Size() {
		return Entry{}, fmt.Errorf("%w: entry %d (log has %d)", ErrNotFound, seq, l.Size())
	}
	var e Entry
	err := l.db.View(func(txn *badger.Txn) (err error) {
		e, err = readEntry(txn, l.ks, seq)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("audit: read entry %d: %w", seq, err)
	}
	return e, nil
}

// Latest returns the most recent signed checkpoint, or an error matching
// ErrNotFound if none has been signed yet.
func (l *Log) Latest() (*Checkpoint, error) {
	if cp := l.latest.Load(); cp != nil {
		return cp, nil
	}
	return nil, fmt.Errorf("%w: no checkpoint yet", ErrNotFound)
}

// Checkpoint returns the stored checkpoint of the tree of the given size.
func (l *Log) Checkpoint(size uint64) (*Checkpoint, error) {
	var cp *Checkpoint
	err := l.db.View(func(txn *badger.Txn) (err error) {
		cp, err = readCheckpoint(txn, l.ks, size)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: no checkpoint of size %d", ErrNotFound, size)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoint %d: %w", size, err)
	}
	return cp, nil
}

// ProveInclusion returns the proof that entry seq is in the tree of size
// treeSize (seq < treeSize <= Size()). Check it with CheckInclusion.
func (l *Log) ProveInclusion(seq, treeSize uint64) (tlog.RecordProof, error) {
	if seq >= treeSize || treeSize > l.Size() {
		return nil, fmt.Errorf("%w: entry %d in tree %d (log has %d)", errBadProofRange, seq, treeSize, l.Size())
	}
	var p tlog.RecordProof
	err := l.db.View(func(txn *badger.Txn) (err error) {
		p, err = tlog.ProveRecord(int64(treeSize), int64(seq), l.hashReader(txn))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: prove inclusion of %d in %d: %w", seq, treeSize, err)
	}
	return p, nil
}

// ProveConsistency returns the proof that the tree of size newSize extends
// the tree of size oldSize (oldSize <= newSize <= Size()). Check it with
// CheckConsistency.
func (l *Log) ProveConsistency(oldSize, newSize uint64) (tlog.TreeProof, error) {
	if oldSize > newSize || newSize > l.Size() {
		return nil, fmt.Errorf("%w: tree %d to tree %d (log has %d)", errBadProofRange, oldSize, newSize, l.Size())
	}
	if oldSize == 0 {
		return tlog.TreeProof{}, nil
	}
	var p tlog.TreeProof
	err := l.db.View(func(txn *badger.Txn) (err error) {
		p, err = tlog.ProveTree(int64(newSize), int64(oldSize), l.hashReader(txn))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: prove consistency of %d with %d: %w", oldSize, newSize, err)
	}
	return p, nil
}
