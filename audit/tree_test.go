package audit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// memHashes is an in-memory tlog hash store, the reference the fringe is
// checked against.
type memHashes []Hash

func (m memHashes) ReadHashes(idx []int64) ([]Hash, error) {
	out := make([]Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m)) {
			return nil, fmt.Errorf("index %d out of range", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

func TestFringeMatchesTlog(t *testing.T) {
	var (
		f      fringe
		ref    memHashes
		stored []Hash
	)
	if f.root() != emptyRoot {
		t.Fatal("empty root")
	}
	for n := int64(0); n < 300; n++ {
		data := fmt.Appendf(nil, "record %d", n)
		want, err := tlog.StoredHashes(n, data, ref)
		if err != nil {
			t.Fatal(err)
		}
		stored = f.push(tlog.RecordHash(data), stored[:0])
		if fmt.Sprint(stored) != fmt.Sprint(want) || len(stored) != storedHashCount(uint64(n)) {
			t.Fatalf("record %d: stored hashes differ from tlog.StoredHashes", n)
		}
		ref = append(ref, want...)
		root, err := tlog.TreeHash(n+1, ref)
		if err != nil {
			t.Fatal(err)
		}
		if f.root() != root {
			t.Fatalf("size %d: root differs from tlog.TreeHash", n+1)
		}
		loaded, err := loadFringe(uint64(n+1), ref)
		if err != nil || loaded.root() != root {
			t.Fatalf("size %d: loaded fringe: %v", n+1, err)
		}
		for i, h := range want {
			rec, level := recordOf(tlog.StoredHashIndex(0, n) + int64(i))
			if rec != uint64(n) || level != i || ref[tlog.StoredHashIndex(0, n)+int64(i)] != h {
				t.Fatalf("recordOf: hash %d of record %d maps to record %d level %d", i, n, rec, level)
			}
		}
	}
}

func TestCheckConsistencyFromEmpty(t *testing.T) {
	older := &Checkpoint{Size: 0, Root: emptyRoot}
	newer := &Checkpoint{Size: 3, Root: Hash{1}}
	if err := CheckConsistency(nil, older, newer); err != nil {
		t.Errorf("from the empty tree: %v", err)
	}
	if err := CheckConsistency(nil, newer, older); err == nil {
		t.Error("a shrinking log was accepted")
	}
	if err := CheckConsistency(tlog.TreeProof{{}}, older, newer); err == nil {
		t.Error("a non-empty proof from the empty tree was accepted")
	}
}

func TestHashCache(t *testing.T) {
	l := newTestLog(t, nil)
	bulkAppend(t, l.Log, 700)
	check := func(tl *testLog) {
		t.Helper()
		size := tl.Size()
		uncached := tl.readerForTest(t)
		all := make([]int64, tlog.StoredHashCount(int64(size)))
		for i := range all {
			all[i] = int64(i)
		}
		want, err := uncached.ReadHashes(all)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the first read of a reopened log fills the cache
			var got []Hash
			err = tl.db.View(func(txn *badger.Txn) (err error) {
				got, err = readHashes(txn, tl.ks, &tl.cache, all)
				return err
			})
			if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("cached hashes differ from stored ones (%v)", err)
			}
		}
		cp, err := tl.Sign(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{0, 63, 64, 127, 128, 511, 699} {
			p, err := tl.ProveInclusion(seq, size)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := tl.Entry(seq)
			if err := CheckInclusion(p, cp, &e); err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
		}
	}
	check(l)
	check(l.reopen(t)) // cache filled from storage as hashes are read
}

// TestOpenReadsNoOldTreeHashes checks that opening a log reads only the
// tree hashes its head needs (the fringe and the latest checkpoint's
// root), not one per subtree of the history: with the stored hashes of an
// old record gone, the log still opens, and a proof that needs them
// reports the damage.
func TestOpenReadsNoOldTreeHashes(t *testing.T) {
	l := newTestLog(t, func(c *Config) { c.CheckpointEvery = -1 })
	bulkAppend(t, l.Log, 700)
	l = l.reopen(t) // the final checkpoint covers all 700
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Record 63 completes the subtree [0, 64): a level-6 hash, which the
	// fringe of 700 (512 + 128 + 32 + 16 + 8 + 4) does not use.
	err := l.db.Update(func(txn *badger.Txn) error { return txn.Delete(l.ks.key(kindTree, 63)) })
	if err != nil {
		t.Fatal(err)
	}
	reopened, err := New(l.db.DB, l.cfg)
	if err != nil {
		t.Fatalf("New with an old tree hash missing: %v", err)
	}
	t.Cleanup(func() { reopened.Close() })
	if _, err := reopened.ProveInclusion(0, 700); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ProveInclusion(0, 700) without the hashes of record 63: %v, want ErrCorrupt", err)
	}
	if _, err := reopened.ProveInclusion(699, 700); err != nil {
		t.Errorf("ProveInclusion(699, 700): %v", err)
	}
}
