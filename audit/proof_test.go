package audit

import (
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

func TestProofs(t *testing.T) {
	l := newTestLog(t, nil)
	appendN(t, l.Log, 0, 37)
	var cps []*Checkpoint
	for _, size := range []uint64{1, 2, 3, 8, 13, 37} {
		root, err := tlog.TreeHash(int64(size), l.readerForTest(t))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := signCheckpoint(l.cfg.Signer, testOrigin, size, root, l.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	for _, cp := range cps {
		for seq := uint64(0); seq < cp.Size; seq++ {
			p, err := l.ProveInclusion(seq, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := l.Entry(seq)
			if err := CheckInclusion(p, cp, &e); err != nil {
				t.Errorf("inclusion of %d in %d: %v", seq, cp.Size, err)
			}
			other, _ := l.Entry((seq + 1) % l.Size())
			if CheckInclusion(p, cp, &other) == nil && other.Seq != seq {
				t.Errorf("inclusion proof of %d accepted entry %d", seq, other.Seq)
			}
		}
	}
	for i, older := range cps {
		for _, newer := range cps[i:] {
			p, err := l.ProveConsistency(older.Size, newer.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConsistency(p, older, newer); err != nil {
				t.Errorf("consistency %d -> %d: %v", older.Size, newer.Size, err)
			}
		}
	}
	bad := []struct {
		name           string
		seq, tree, old uint64
	}{
		{"entry past tree", 5, 5, 0},
		{"tree past log", 0, 38, 0},
	}
	for _, tt := range bad {
		if _, err := l.ProveInclusion(tt.seq, tt.tree); err == nil {
			t.Errorf("%s: ProveInclusion succeeded", tt.name)
		}
	}
	if _, err := l.ProveConsistency(5, 4); err == nil {
		t.Error("ProveConsistency(5, 4) succeeded")
	}
	if _, err := l.ProveConsistency(5, 38); err == nil {
		t.Error("ProveConsistency past the log succeeded")
	}
}

func (tl *testLog) readerForTest(t testing.TB) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]Hash, error) {
		var out []Hash
		err := tl.db.View(func(txn *badger.Txn) (err error) {
			out, err = readHashes(txn, tl.ks, nil, idx)
			return err
		})
		return out, err
	})
}
