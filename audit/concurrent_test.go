package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestConcurrentWriters(t *testing.T) {
	const writers, total = 32, 10000
	l := newTestLog(t, nil)
	seen := make([]int32, total)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < total; i += writers {
				e, err := l.Append(context.Background(), record(i), nil)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if e.Seq < total {
					seen[e.Seq]++
				} else {
					errs = append(errs, fmt.Errorf("seq %d out of range", e.Seq))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d appends failed, first: %v", len(errs), errs[0])
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("seq %d returned %d times", seq, n)
		}
	}
	ex, _ := export(t, l.Log, 0, total)
	res, err := Verify(ex, l.verify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != total || res.Checkpoint.Size != total {
		t.Fatalf("verified %d entries, checkpoint %d", res.Entries, res.Checkpoint.Size)
	}
	subjects := map[string]bool{}
	for i, e := range ex.Entries {
		if e.Seq != uint64(i) || subjects[e.Subject] {
			t.Fatalf("entry %d: seq %d subject %s (duplicate %v)", i, e.Seq, e.Subject, subjects[e.Subject])
		}
		subjects[e.Subject] = true
	}
	if len(subjects) != total {
		t.Fatalf("%d distinct records, want %d", len(subjects), total)
	}
	for _, seq := range []uint64{0, 1, 4999, total - 1} {
		p, err := l.ProveInclusion(seq, total)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckInclusion(p, res.Checkpoint, &ex.Entries[seq]); err != nil {
			t.Errorf("inclusion of %d: %v", seq, err)
		}
	}
	if st := l.Stats(); st.GroupSize.Count >= total {
		t.Logf("no grouping happened: %d commits for %d entries", st.GroupSize.Count, total)
	}
}
