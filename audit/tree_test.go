package audit

import (
	"context"
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
		var got []Hash
		err = tl.db.View(func(txn *badger.Txn) (err error) {
			got, err = readHashes(txn, tl.ks, &tl.cache, all)
			return err
		})
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cached hashes differ from stored ones (%v)", err)
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
	check(l.reopen(t)) // cache loaded from storage
}
