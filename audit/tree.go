package audit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// fringe is the compact form of a Merkle tree over leaves [0, n): the root
// hashes of the perfect subtrees of its binary decomposition, largest (left)
// first. Appending a leaf and computing the root need only these hashes, so
// neither the writer nor the verifier reads old hashes back.
type fringe struct {
	n      uint64
	hashes []Hash // len(hashes) == bits.OnesCount64(n)
}

// push appends the leaf hash and appends to stored the hashes that
// tlog.StoredHashes would return for that record: the leaf, then the root
// of every subtree the leaf completes, lowest level first.
func (f *fringe) push(leaf Hash, stored []Hash) []Hash {
	stored = append(stored, leaf)
	h := leaf
	for k := f.n; k&1 == 1; k >>= 1 {
		last := len(f.hashes) - 1
		h = tlog.NodeHash(f.hashes[last], h)
		f.hashes = f.hashes[:last]
		stored = append(stored, h)
	}
	f.hashes = append(f.hashes, h)
	f.n++
	return stored
}

// emptyRoot is the root of the empty tree (RFC 6962: SHA-256 of "").
var emptyRoot = Hash(sha256.Sum256(nil))

// root returns the Merkle tree hash of the n leaves.
func (f *fringe) root() Hash {
	if f.n == 0 {
		return emptyRoot
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

func (f *fringe) clone() fringe {
	return fringe{n: f.n, hashes: append(make([]Hash, 0, len(f.hashes)+8), f.hashes...)}
}

// fringeIndexes returns the stored-hash indexes of the fringe of a tree of
// size n, largest subtree first.
func fringeIndexes(n uint64) []int64 {
	var idx []int64
	lo := uint64(0)
	for level := 63; level >= 0; level-- {
		if n&(1<<level) != 0 {
			idx = append(idx, tlog.StoredHashIndex(level, int64(lo>>level)))
			lo += 1 << level
		}
	}
	return idx
}

// loadFringe reads the fringe of a tree of size n through r.
func loadFringe(n uint64, r tlog.HashReader) (fringe, error) {
	idx := fringeIndexes(n)
	if len(idx) == 0 {
		return fringe{}, nil
	}
	hs, err := r.ReadHashes(idx)
	if err != nil {
		return fringe{}, err
	}
	if len(hs) != len(idx) {
		return fringe{}, fmt.Errorf("read %d tree hashes, want %d", len(hs), len(idx))
	}
	return fringe{n: n, hashes: hs}, nil
}

// recordOf returns the record (leaf index) whose write stored the hash with
// the given stored-hash index, and that hash's position among the hashes
// stored with it (which is its level).
func recordOf(index int64) (record uint64, level int) {
	level, n := tlog.SplitStoredHashIndex(index)
	return uint64(n+1)<<level - 1, level
}

// storedHashCount returns how many hashes the write of record n stores.
func storedHashCount(n uint64) int { return 1 + bits.TrailingZeros64(n+1) }

// errBadProofRange reports a proof request for tree sizes the log does not
// (yet) have, or checkpoints that cannot be compared.
var errBadProofRange = errors.New("audit: invalid proof range")

// CheckInclusion verifies offline that proof shows entry e is in the tree of
// checkpoint cp. The checkpoint should come from OpenCheckpoint.
func CheckInclusion(proof tlog.RecordProof, cp *Checkpoint, e *Entry) error {
	if cp == nil || e == nil || e.Seq >= cp.Size {
		return fmt.Errorf("%w: entry is not below the checkpoint's size", errBadProofRange)
	}
	if e.ComputeHash() != e.Hash {
		return fmt.Errorf("audit: check inclusion: entry %d: hash does not match its contents", e.Seq)
	}
	if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(e.Seq), e.LeafHash()); err != nil {
		return fmt.Errorf("audit: check inclusion of entry %d in tree of size %d: %w", e.Seq, cp.Size, err)
	}
	return nil
}

// CheckConsistency verifies offline that proof shows the tree of newer
// extends the tree of older (both checkpoints should come from
// OpenCheckpoint).
func CheckConsistency(proof tlog.TreeProof, older, newer *Checkpoint) error {
	if older == nil || newer == nil || older.Size > newer.Size {
		return fmt.Errorf("%w: older checkpoint is larger than newer", errBadProofRange)
	}
	if older.Size == 0 {
		if older.Root != emptyRoot || len(proof) != 0 {
			return errors.New("audit: check consistency: bad proof from the empty tree")
		}
		return nil
	}
	if err := tlog.CheckTree(proof, int64(newer.Size), newer.Root, int64(older.Size), older.Root); err != nil {
		return fmt.Errorf("audit: check consistency of tree %d with tree %d: %w", older.Size, newer.Size, err)
	}
	return nil
}
