package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jitgrant/jitgrant/internal/kv"
)

func TestChangeCommitsWithItsEntry(t *testing.T) {
	errDenied := errors.New("request is not pending")
	tests := []struct {
		name      string
		change    func(tx Tx) error
		wantErr   error
		wantKey   bool
		wantEntry bool
	}{
		{"change and entry commit", func(tx Tx) error { return tx.Set([]byte("req/1"), []byte("APPROVED")) }, nil, true, true},
		{"failing change leaves no entry", func(tx Tx) error {
			if err := tx.Set([]byte("req/1"), []byte("APPROVED")); err != nil {
				return err
			}
			return errDenied
		}, errDenied, false, false},
		{"panicking change leaves no entry", func(tx Tx) error {
			_ = tx.Set([]byte("req/1"), []byte("APPROVED"))
			panic("boom")
		}, nil, false, false},
		{"write to the log's keys is refused", func(tx Tx) error { return tx.Set([]byte("a/e/x"), nil) }, ErrReservedKey, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLog(t, nil)
			_, err := l.Append(context.Background(), record(0), tt.change)
			if tt.wantEntry != (err == nil) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Append: %v", err)
			}
			if _, ok := getKey(t, l.db.DB, "req/1"); ok != tt.wantKey {
				t.Errorf("key written: %v, want %v", ok, tt.wantKey)
			}
			if got := l.Size() == 1; got != tt.wantEntry {
				t.Errorf("entry written: %v, want %v", got, tt.wantEntry)
			}
			// The log goes on either way.
			if e := mustAppend(t, l.Log, record(1)); e.Seq != l.Size()-1 {
				t.Errorf("next entry has seq %d", e.Seq)
			}
		})
	}
}

func TestAuditFailureFailsChange(t *testing.T) {
	t.Run("commit fails", func(t *testing.T) {
		l := newTestLog(t, nil)
		mustAppend(t, l.Log, record(0))
		errDisk := errors.New("disk on fire")
		fail := func() error { return errDisk }
		l.hookBeforeCommit.Store(&fail)
		_, err := l.Append(context.Background(), record(1), func(tx Tx) error { return tx.Set([]byte("k"), []byte("v")) })
		if !errors.Is(err, errDisk) {
			t.Fatalf("Append: %v, want the commit error", err)
		}
		if _, ok := getKey(t, l.db.DB, "k"); ok || l.Size() != 1 {
			t.Fatal("the change or the entry was written although the log failed")
		}
		l.hookBeforeCommit.Store(nil)
		// Fail closed: the log stays failed until reopened.
		if _, err := l.Append(context.Background(), record(2), nil); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append after a failure: %v, want ErrFailed", err)
		}
		if err := l.Close(); !errors.Is(err, ErrFailed) {
			t.Errorf("Close: %v, want ErrFailed", err)
		}
		l = l.reopen(t)
		if e := mustAppend(t, l.Log, record(1)); e.Seq != 1 {
			t.Fatalf("after reopen: seq %d, want 1", e.Seq)
		}
	})
	t.Run("database closed underneath", func(t *testing.T) {
		l := newTestLog(t, nil)
		mustAppend(t, l.Log, record(0))
		if err := l.db.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := l.Append(context.Background(), record(1), func(tx Tx) error { return tx.Set([]byte("k"), []byte("v")) })
		if err == nil || !strings.HasPrefix(err.Error(), "audit: ") {
			t.Fatalf("Append on a closed database: %v", err)
		}
		l.Close()
		db := openDB(t, l.dir, kv.Config{})
		if _, ok := getKey(t, db.DB, "k"); ok {
			t.Fatal("the change was written although its entry failed")
		}
	})
}

// blockWriter makes the writer wait inside a change function until release
// is called, so that the appends submitted meanwhile form one group.
func blockWriter(t *testing.T, l *Log) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), record(-1), func(Tx) error {
			close(entered)
			<-gate
			return nil
		})
		done <- err
	}()
	<-entered
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// submit starts an append and returns once it is queued, so that appends
// submitted one after the other are queued in that order.
func submit(t *testing.T, l *Log, r Record, change func(Tx) error) <-chan result {
	t.Helper()
	return submitAll(t, l, []Record{r}, change)
}

// submitAll is submit for an AppendAll of recs.
func submitAll(t *testing.T, l *Log, recs []Record, change func(Tx) error) <-chan result {
	t.Helper()
	out := make(chan result, 1)
	queued := len(l.queue)
	go func() {
		es, err := l.AppendAll(context.Background(), recs, change)
		out <- result{es, err}
	}()
	for len(l.queue) == queued {
		runtime.Gosched()
	}
	return out
}

func TestGroupWithFailingMembers(t *testing.T) {
	l := newTestLog(t, nil)
	release := blockWriter(t, l.Log)
	errNo := errors.New("no")
	var sawEarlier []byte
	changes := []func(Tx) error{
		func(tx Tx) error { return tx.Set([]byte("k/0"), []byte("zero")) },
		func(tx Tx) error { _ = tx.Set([]byte("k/1"), []byte("one")); return errNo },
		func(tx Tx) error { _ = tx.Set([]byte("k/2"), []byte("two")); panic("bug") },
		func(tx Tx) error {
			v, err := tx.Get([]byte("k/0")) // written earlier in this group
			sawEarlier = v
			if err != nil {
				return err
			}
			if _, err := tx.Get([]byte("k/1")); !errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("saw a failed member's write: %v", err)
			}
			return tx.Set([]byte("k/3"), []byte("three"))
		},
		nil,
	}
	var res []<-chan result
	for i, c := range changes {
		res = append(res, submit(t, l.Log, record(i), c))
	}
	groupsBefore := l.Stats().GroupSize.Count
	release()

	wantSeq := []int64{1, -1, -1, 2, 3} // the blocker took 0
	for i, ch := range res {
		r := <-ch
		if wantSeq[i] < 0 {
			if r.err == nil {
				t.Errorf("member %d: no error", i)
			}
			continue
		}
		if r.err != nil || r.entries[0].Seq != uint64(wantSeq[i]) || r.entries[0].Subject != record(i).Subject {
			t.Errorf("member %d: %v err %v, want seq %d", i, r.entries, r.err, wantSeq[i])
		}
	}
	if string(sawEarlier) != "zero" {
		t.Errorf("member 3 read %q from an earlier member, want zero", sawEarlier)
	}
	for k, want := range map[string]bool{"k/0": true, "k/1": false, "k/2": false, "k/3": true} {
		if _, ok := getKey(t, l.db.DB, k); ok != want {
			t.Errorf("key %s present %v, want %v", k, ok, want)
		}
	}
	if got := l.Stats().GroupSize.Count - groupsBefore; got != 2 {
		t.Errorf("%d commits, want 2 (the blocker, then one group)", got)
	}
	ex, _ := export(t, l.Log, 0, 4)
	if _, err := Verify(ex, l.verify, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTxView(t *testing.T) {
	l := newTestLog(t, nil)
	_, err := l.Append(context.Background(), record(0), func(tx Tx) error {
		for _, k := range []string{"p/a", "p/c", "p/e", "q/x"} {
			if err := tx.Set([]byte(k), []byte("old "+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var leaked Tx
	var got []string
	e, err := l.Append(context.Background(), record(1), func(tx Tx) error {
		leaked = tx
		if tx.Seq() != 1 {
			return fmt.Errorf("Seq() = %d, want 1", tx.Seq())
		}
		if err := tx.Set([]byte("p/b"), []byte("new p/b")); err != nil {
			return err
		}
		if err := tx.Set([]byte("p/c"), []byte("new p/c")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("p/e")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("p/c")); err != nil || string(v) != "new p/c" {
			return fmt.Errorf("Get(p/c) = %q, %v", v, err)
		}
		if _, err := tx.Get([]byte("p/e")); !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("Get(p/e) after Delete: %v", err)
		}
		return tx.Iterate([]byte("p/"), func(k, v []byte) error {
			got = append(got, string(k)+"="+string(v))
			return nil
		})
	})
	if err != nil || e.Seq != 1 {
		t.Fatalf("Append: %v (seq %d)", err, e.Seq)
	}
	want := "p/a=old p/a,p/b=new p/b,p/c=new p/c"
	if strings.Join(got, ",") != want {
		t.Errorf("Iterate saw %q, want %q", strings.Join(got, ","), want)
	}
	if _, err := leaked.Get([]byte("p/a")); !errors.Is(err, ErrTxDone) {
		t.Errorf("Get after return: %v, want ErrTxDone", err)
	}
	if err := leaked.Set([]byte("p/z"), nil); !errors.Is(err, ErrTxDone) {
		t.Errorf("Set after return: %v, want ErrTxDone", err)
	}
}

func TestConflictIsRetried(t *testing.T) {
	l := newTestLog(t, nil)
	calls := 0
	_, err := l.Append(context.Background(), record(0), func(tx Tx) error {
		calls++
		v, err := tx.Get([]byte("counter"))
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if calls == 1 { // another transaction of the caller's writes the key meanwhile
			if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("counter"), []byte("1")) }); err != nil {
				return err
			}
		}
		return tx.Set([]byte("counter"), append(v, '+'))
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := getKey(t, l.db.DB, "counter"); calls != 2 || string(v) != "1+" {
		t.Errorf("calls = %d, counter = %q; want 2 calls and 1+", calls, v)
	}
	if st := l.Stats(); st.Conflicts != 1 || st.Size != 1 {
		t.Errorf("Stats: %d conflicts, size %d", st.Conflicts, st.Size)
	}
}

func TestGroupTooBigIsSplit(t *testing.T) {
	dir := t.TempDir()
	signer, verifier := testKeys(t, "example.org/audit", 1)
	clock := newFakeClock()
	// 1 MiB memtables: a transaction holds about 1,600 writes.
	db := openDB(t, dir, kv.Config{MemTableSize: 1 << 20})
	l, err := New(db.DB, Config{Signer: signer, Origin: testOrigin, Actor: testActor, Now: clock.Now,
		CheckpointEvery: -1, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	writes := func(member, n int) func(Tx) error {
		return func(tx Tx) error {
			for i := range n {
				if err := tx.Set(fmt.Appendf(nil, "m/%d/%d", member, i), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		}
	}
	release := blockWriter(t, l)
	var res []<-chan result
	for i := range 8 {
		res = append(res, submit(t, l, record(i), writes(i, 500)))
	}
	huge := submit(t, l, record(8), writes(8, 5000))
	release()
	seqs := map[uint64]bool{}
	for i, ch := range res {
		r := <-ch
		if r.err != nil {
			t.Fatalf("member %d: %v", i, r.err)
		}
		seqs[r.entries[0].Seq] = true
	}
	if r := <-huge; !errors.Is(r.err, ErrTooLarge) {
		t.Errorf("huge member: %v, want ErrTooLarge", r.err)
	}
	for s := uint64(1); s <= 8; s++ {
		if !seqs[s] {
			t.Errorf("seq %d missing", s)
		}
	}
	if _, ok := getKey(t, db.DB, "m/7/499"); !ok {
		t.Error("last member's writes missing")
	}
	if _, ok := getKey(t, db.DB, "m/8/0"); ok {
		t.Error("the too-large member's writes were committed")
	}
	tl := &testLog{Log: l, verify: verifier}
	ex, _ := export(t, tl.Log, 0, 9)
	if _, err := Verify(ex, verifier, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAppendAll(t *testing.T) {
	errNo := errors.New("no")
	recs := func(first, n int) []Record {
		var out []Record
		for i := range n {
			out = append(out, record(first+i))
		}
		return out
	}
	tests := []struct {
		name    string
		recs    []Record
		change  func(tx Tx) error
		wantErr error
		wantKey bool
	}{
		{"two records with a change", recs(0, 2), func(tx Tx) error {
			if tx.Seq() != 1 { // the entry before the set is 0
				return fmt.Errorf("Seq() = %d, want the first record's, 1", tx.Seq())
			}
			return tx.Set([]byte("req/1"), []byte("ISSUED"))
		}, nil, true},
		{"three records without a change", recs(0, 3), nil, nil, false},
		{"failing change writes none", recs(0, 2), func(tx Tx) error {
			_ = tx.Set([]byte("req/1"), []byte("ISSUED"))
			return errNo
		}, errNo, false},
		{"no record", nil, nil, ErrInvalid, false},
		{"one invalid record refuses all", append(recs(0, 1), Record{Actor: "alice", Action: ActionGrantIssued}), nil, ErrInvalid, false},
		{"checkpoint is the log's", append(recs(0, 1), Record{Actor: testUser, Action: ActionCheckpoint}), nil, ErrInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLog(t, nil)
			mustAppend(t, l.Log, record(-1))
			es, err := l.AppendAll(context.Background(), tt.recs, tt.change)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || es != nil {
					t.Fatalf("AppendAll: %v (%d entries), want %v", err, len(es), tt.wantErr)
				}
				if l.Size() != 1 {
					t.Errorf("Size() = %d after a refused AppendAll, want 1", l.Size())
				}
			} else {
				if err != nil || len(es) != len(tt.recs) {
					t.Fatalf("AppendAll: %v (%d entries), want %d", err, len(es), len(tt.recs))
				}
				for i, e := range es {
					stored, err := l.Entry(e.Seq)
					if e.Seq != uint64(1+i) || e.Subject != tt.recs[i].Subject || err != nil || stored.Hash != e.Hash {
						t.Errorf("entry %d: seq %d subject %q (stored: %v), want seq %d subject %q", i, e.Seq, e.Subject, err, 1+i, tt.recs[i].Subject)
					}
				}
				if st := l.Stats(); st.Appended != uint64(1+len(tt.recs)) {
					t.Errorf("Stats().Appended = %d, want %d", st.Appended, 1+len(tt.recs))
				}
			}
			if _, ok := getKey(t, l.db.DB, "req/1"); ok != tt.wantKey {
				t.Errorf("key written: %v, want %v", ok, tt.wantKey)
			}
			ex, _ := export(t, l.Log, 0, l.Size())
			if _, err := Verify(ex, l.verify, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAppendAllInAGroup(t *testing.T) {
	l := newTestLog(t, nil)
	release := blockWriter(t, l.Log)
	errNo := errors.New("no")
	members := []struct {
		recs    []Record
		change  func(Tx) error
		wantSeq []uint64
	}{
		{[]Record{record(0)}, nil, []uint64{1}},
		{[]Record{record(1), record(2)}, func(tx Tx) error { return tx.Set([]byte("k/1"), []byte("v")) }, []uint64{2, 3}},
		{[]Record{record(3), record(4)}, func(Tx) error { return errNo }, nil},
		{[]Record{record(5), record(6), record(7)}, nil, []uint64{4, 5, 6}},
		{[]Record{record(8)}, nil, []uint64{7}},
	}
	var res []<-chan result
	for _, m := range members {
		res = append(res, submitAll(t, l.Log, m.recs, m.change))
	}
	groupsBefore := l.Stats().GroupSize
	release()
	for i, ch := range res {
		r := <-ch
		var got []uint64
		for j, e := range r.entries {
			got = append(got, e.Seq)
			if e.Subject != members[i].recs[j].Subject {
				t.Errorf("member %d entry %d: subject %q, want %q", i, j, e.Subject, members[i].recs[j].Subject)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(members[i].wantSeq) || (r.err == nil) != (members[i].wantSeq != nil) {
			t.Errorf("member %d: seqs %v err %v, want %v", i, got, r.err, members[i].wantSeq)
		}
	}
	if st := l.Stats().GroupSize; st.Count-groupsBefore.Count != 2 || st.Sum-groupsBefore.Sum != 8 {
		t.Errorf("%d commits of %v entries, want 2 of 8 (the blocker, then one group of 7)", st.Count-groupsBefore.Count, st.Sum-groupsBefore.Sum)
	}
	ex, _ := export(t, l.Log, 0, 8)
	if _, err := Verify(ex, l.verify, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCommitDelay(t *testing.T) {
	l := newTestLog(t, func(c *Config) { c.CommitDelay = time.Hour })
	waits := make(chan struct{}, 10)
	hook := func() { waits <- struct{}{} }
	l.hookGather.Store(&hook)
	// A lone appender never waits: each group holds one append.
	for i := range 3 {
		if e := mustAppend(t, l.Log, record(i)); e.Seq != uint64(i) {
			t.Fatalf("seq %d, want %d", e.Seq, i)
		}
	}
	if len(waits) != 0 {
		t.Fatal("the writer waited for company behind a lone appender")
	}
	// After a group of two, the next append waits for company (an hour
	// here); Close ends the wait and commits it.
	release := blockWriter(t, l.Log)
	a, b := submit(t, l.Log, record(3), nil), submit(t, l.Log, record(4), nil)
	release()
	for _, ch := range []<-chan result{a, b} {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	delayed := make(chan result, 1)
	go func() {
		e, err := l.Append(context.Background(), record(5), nil)
		delayed <- result{[]Entry{e}, err}
	}()
	<-waits
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-delayed; r.err != nil || r.entries[0].Seq != 6 {
		t.Fatalf("delayed append: %v, %v; want seq 6", r.entries, r.err)
	}
}

// TestWriteCheckRefuses: a write refused by Config.WriteCheck (jitd: the
// disk is nearly full) commits neither the change nor its entry, matches
// ErrRefused with the check's text, and leaves the log usable: appends
// succeed again once the check passes. Checkpoints wait too.
func TestWriteCheckRefuses(t *testing.T) {
	errFull := errors.New("disk nearly full")
	var full atomic.Bool
	l := newTestLog(t, func(c *Config) {
		c.WriteCheck = func() error {
			if full.Load() {
				return errFull
			}
			return nil
		}
	})
	mustAppend(t, l.Log, record(0))
	if _, err := l.Sign(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l.Log, record(1))
	full.Store(true)
	_, err := l.Append(context.Background(), record(2), func(tx Tx) error { return tx.Set([]byte("k"), []byte("v")) })
	var refused *RefusedError
	if !errors.Is(err, ErrRefused) || !errors.Is(err, errFull) || !errors.As(err, &refused) || err.Error() != errFull.Error() {
		t.Fatalf("Append while refused: %v, want a *RefusedError wrapping the check's error", err)
	}
	if _, ok := getKey(t, l.db.DB, "k"); ok || l.Size() != 2 {
		t.Fatal("the change or its entry was written although the check refused it")
	}
	if _, err := l.Sign(context.Background()); !errors.Is(err, ErrRefused) {
		t.Errorf("Sign while refused: %v, want ErrRefused", err)
	}
	// Reads go on: an export ends at the latest stored checkpoint.
	if ex, _ := export(t, l.Log, 0, 100); ex.To != 1 || len(ex.Entries) != 1 {
		t.Errorf("export while refused: [%d, %d) with %d entries, want the checkpoint's 1", ex.From, ex.To, len(ex.Entries))
	}
	full.Store(false)
	if _, err := l.Append(context.Background(), record(2), func(tx Tx) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatalf("Append once the check passes: %v", err)
	}
	if _, ok := getKey(t, l.db.DB, "k"); !ok || l.Size() != 3 {
		t.Fatal("the change or its entry is missing after the check passed")
	}
}
