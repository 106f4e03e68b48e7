package audit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func TestConcurrentWriters(t *testing.T) {
	const writers, total = 32, 10000
	l := newTestLog(t, nil)
	// Hold the writer (its append takes seq 0) until every writer's first
	// append is queued: those must then commit as one group, whatever the
	// scheduling, so that the grouping is checked and not left to chance.
	release := blockWriter(t, l.Log)
	seen := make([]int32, total+1)
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
				} else if e.Seq >= 1 && e.Seq <= total {
					seen[e.Seq]++
				} else {
					errs = append(errs, fmt.Errorf("seq %d out of range", e.Seq))
				}
				mu.Unlock()
			}
		})
	}
	for len(l.queue) < writers {
		runtime.Gosched()
	}
	release()
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d appends failed, first: %v", len(errs), errs[0])
	}
	for seq := 1; seq <= total; seq++ {
		if n := seen[seq]; n != 1 {
			t.Fatalf("seq %d returned %d times", seq, n)
		}
	}
	ex, _ := export(t, l.Log, 0, total+1)
	res, err := Verify(ex, l.verify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != total+1 || res.Checkpoint.Size != total+1 {
		t.Fatalf("verified %d entries, checkpoint %d", res.Entries, res.Checkpoint.Size)
	}
	subjects := map[string]bool{}
	for i, e := range ex.Entries {
		if e.Seq != uint64(i) || subjects[e.Subject] {
			t.Fatalf("entry %d: seq %d subject %s (duplicate %v)", i, e.Seq, e.Subject, subjects[e.Subject])
		}
		subjects[e.Subject] = true
	}
	if len(subjects) != total+1 {
		t.Fatalf("%d distinct records, want %d", len(subjects), total)
	}
	for _, seq := range []uint64{0, 1, 4999, total} {
		p, err := l.ProveInclusion(seq, total+1)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckInclusion(p, res.Checkpoint, &ex.Entries[seq]); err != nil {
			t.Errorf("inclusion of %d: %v", seq, err)
		}
	}
	// One commit for the blocker, one for the first appends of all the
	// writers, at most one per append for the rest.
	if st := l.Stats().GroupSize; st.Sum != total+1 || st.Count > total+1-(writers-1) {
		t.Errorf("%d commits for %v entries, want at most %d: the %d appends queued together were not committed as one group",
			st.Count, st.Sum, total+1-(writers-1), writers)
	}
}
