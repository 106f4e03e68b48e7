package audit

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestAppendReadAndVerify(t *testing.T) {
	l := newTestLog(t, nil)
	var prev Hash
	for i := range 5 {
		e := mustAppend(t, l.Log, record(i))
		if e.Seq != uint64(i) || e.PrevHash != prev || e.ComputeHash() != e.Hash {
			t.Fatalf("entry %d: seq %d, chain ok %v", i, e.Seq, e.ComputeHash() == e.Hash && e.PrevHash == prev)
		}
		prev = e.Hash
		got, err := l.Entry(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash != e.Hash || got.Subject != e.Subject || got.Details["reason"] != e.Details["reason"] || !got.Time.Equal(e.Time) {
			t.Errorf("Entry(%d) = %+v, want %+v", i, got, e)
		}
	}
	if _, err := l.Entry(5); !errors.Is(err, ErrNotFound) {
		t.Errorf("Entry(5) error %v, want ErrNotFound", err)
	}
	ex, _ := export(t, l.Log, 0, 100)
	res, err := Verify(ex, l.verify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "OK: 5 entries, root " + res.Checkpoint.Root.String(); res.String() != want {
		t.Errorf("Result = %q, want %q", res, want)
	}
}

func TestAppendRejectsInvalidRecords(t *testing.T) {
	l := newTestLog(t, nil)
	long := strings.Repeat("x", MaxDetailValueLen+1)
	tests := []struct {
		name string
		rec  Record
	}{
		{"actor not a SPIFFE ID", Record{Actor: "alice", Action: ActionGrantIssued}},
		{"actor with upper-case trust domain", Record{Actor: "spiffe://Example.org/x", Action: ActionGrantIssued}},
		{"unknown action", Record{Actor: testUser, Action: "grant.stolen"}},
		{"checkpoint is the log's", Record{Actor: testUser, Action: ActionCheckpoint}},
		{"subject with newline", Record{Actor: testUser, Action: ActionGrantIssued, Subject: "a\nb"}},
		{"bad detail key", Record{Actor: testUser, Action: ActionGrantIssued, Details: map[string]string{"a b": "c"}}},
		{"detail value too long", Record{Actor: testUser, Action: ActionGrantIssued, Details: map[string]string{"a": long}}},
		{"detail value not UTF-8", Record{Actor: testUser, Action: ActionGrantIssued, Details: map[string]string{"a": "\xff"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Append(context.Background(), tt.rec, func(tx Tx) error {
				t.Error("change ran for an invalid record")
				return nil
			})
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "audit: ") {
				t.Errorf("error %v, want ErrInvalid with audit: prefix", err)
			}
		})
	}
	if l.Size() != 0 {
		t.Errorf("Size() = %d after invalid appends", l.Size())
	}
}

func TestReopenContinuesChain(t *testing.T) {
	l := newTestLog(t, nil)
	appendN(t, l.Log, 0, 7)
	last, _ := l.Entry(6)
	l = l.reopen(t)
	if l.Size() != 7 {
		t.Fatalf("Size() after reopen = %d, want 7", l.Size())
	}
	e := mustAppend(t, l.Log, record(7))
	if e.Seq != 7 || e.PrevHash != last.Hash {
		t.Fatalf("entry after reopen: seq %d prev %v, want 7 and %v", e.Seq, e.PrevHash, last.Hash)
	}
	ex, _ := export(t, l.Log, 0, 8)
	if _, err := Verify(ex, l.verify, nil); err != nil {
		t.Fatal(err)
	}
}

func TestEntryTimesNeverGoBack(t *testing.T) {
	l := newTestLog(t, nil)
	a := mustAppend(t, l.Log, record(0))
	l.clock.Advance(-time.Hour)
	b := mustAppend(t, l.Log, record(1))
	if b.Time.Before(a.Time) {
		t.Errorf("entry time went back: %v then %v", a.Time, b.Time)
	}
}

func TestCloseThenAppend(t *testing.T) {
	l := newTestLog(t, nil)
	appendN(t, l.Log, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(context.Background(), record(3), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := l.Sign(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
	cp, err := l.Latest()
	if err != nil || cp.Size != 3 {
		t.Fatalf("Latest after Close = %v, %v; want the final checkpoint of size 3", cp, err)
	}
}

func TestCanceledContextWritesNothing(t *testing.T) {
	l := newTestLog(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Append(ctx, record(0), func(tx Tx) error { return tx.Set([]byte("k"), []byte("v")) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled context: %v", err)
	}
	if _, ok := getKey(t, l.db.DB, "k"); ok || l.Size() != 0 {
		t.Error("a canceled append wrote something")
	}
}

func TestCheckpoints(t *testing.T) {
	t.Run("every N entries, recorded in the log", func(t *testing.T) {
		l := newTestLog(t, func(c *Config) { c.CheckpointEvery = 10 })
		appendN(t, l.Log, 0, 25)
		l.sync(t)
		// 10 records, checkpoint entry 10, 10 records, checkpoint entry 21, 4 records.
		if l.Size() != 27 {
			t.Fatalf("Size() = %d, want 27", l.Size())
		}
		for _, seq := range []uint64{10, 21} {
			e, err := l.Entry(seq)
			if err != nil || e.Action != ActionCheckpoint || e.Actor != testActor {
				t.Fatalf("entry %d = %+v, %v; want a checkpoint entry", seq, e, err)
			}
			cp, err := OpenCheckpoint([]byte(e.Details["note"]), l.verify)
			if err != nil || cp.Size != seq {
				t.Fatalf("recorded checkpoint %d: %v, %v", seq, cp, err)
			}
			stored, err := l.Checkpoint(seq)
			if err != nil || stored.Root != cp.Root {
				t.Fatalf("stored checkpoint %d: %v, %v", seq, stored, err)
			}
		}
		latest, err := l.Latest()
		if err != nil || latest.Size != 21 {
			t.Fatalf("Latest() = %v, %v; want size 21", latest, err)
		}
	})
	t.Run("after the interval, by the injected clock", func(t *testing.T) {
		l := newTestLog(t, func(c *Config) { c.CheckpointInterval = time.Minute })
		appendN(t, l.Log, 0, 3)
		if _, err := l.Latest(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("checkpoint before the interval: %v", err)
		}
		l.clock.Advance(2 * time.Minute)
		appendN(t, l.Log, 3, 1)
		l.sync(t)
		cp, err := l.Latest()
		if err != nil || cp.Size != 4 || !cp.Time.Equal(l.clock.Now().Truncate(time.Second)) {
			t.Fatalf("Latest() = %v, %v; want size 4 at %v", cp, err, l.clock.Now())
		}
		if st := l.Stats(); st.CheckpointSize != 4 || st.CheckpointAge < 0 {
			t.Errorf("Stats() checkpoint = %d age %v", st.CheckpointSize, st.CheckpointAge)
		}
	})
	t.Run("on tick when idle", func(t *testing.T) {
		tick := make(chan time.Time)
		signer, _ := testKeys(t, "example.org/audit", 1)
		clock := newFakeClock()
		db := openDB(t, t.TempDir(), kvConfigForTests())
		l, err := newLog(db.DB, Config{Signer: signer, Origin: testOrigin, Actor: testActor, Now: clock.Now,
			CheckpointEvery: -1, CheckpointInterval: time.Minute}, tick)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		appendN(t, l, 0, 2)
		clock.Advance(time.Hour)
		tick <- time.Time{} // handled by the writer before the next request
		if _, err := l.Sign(context.Background()); err != nil {
			t.Fatal(err)
		}
		e, err := l.Entry(2)
		if err != nil || e.Action != ActionCheckpoint {
			t.Fatalf("entry 2 = %+v, %v; want a checkpoint entry", e, err)
		}
	})
	t.Run("at close, not recorded", func(t *testing.T) {
		l := newTestLog(t, nil)
		appendN(t, l.Log, 0, 3)
		l = l.reopen(t)
		cp, err := l.Latest()
		if err != nil || cp.Size != 3 || l.Size() != 3 {
			t.Fatalf("after reopen: Latest() = %v, %v, Size() = %d", cp, err, l.Size())
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	signer, _ := testKeys(t, "example.org/audit", 1)
	db := openDB(t, t.TempDir(), kvConfigForTests())
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no signer", Config{Origin: testOrigin, Actor: testActor}},
		{"no origin", Config{Signer: signer, Actor: testActor}},
		{"origin with newline", Config{Signer: signer, Origin: "a\nb", Actor: testActor}},
		{"actor not SPIFFE", Config{Signer: signer, Origin: testOrigin, Actor: "jitd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(db.DB, tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), "audit: ") {
				t.Errorf("error %q lacks the audit: prefix", err)
			}
		})
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestStoredTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(tl *testLog, txn *badger.Txn) error
		check  func(t *testing.T, tl *testLog, openErr error)
	}{
		{
			name: "entry rewritten with its own hash recomputed",
			tamper: func(tl *testLog, txn *badger.Txn) error {
				e, err := readEntry(txn, tl.ks, 2)
				if err != nil {
					return err
				}
				e.Subject = "forged"
				canon := e.AppendCanonical(nil)
				return txn.Set(tl.ks.key(kindEntry, 2), encodeEntryValue(nil, e.PrevHash, ChainHash(e.PrevHash, canon), canon))
			},
			check: func(t *testing.T, tl *testLog, openErr error) {
				if openErr != nil {
					t.Fatal(openErr)
				}
				ex, _ := export(t, tl.Log, 0, 4)
				var ve *VerifyError
				if _, err := Verify(ex, tl.verify, nil); !errors.As(err, &ve) || ve.Seq != 2 || ve.Kind != KindEdited {
					t.Fatalf("Verify: %v, want seq 2 edited", err)
				}
			},
		},
		{
			name: "entry bytes damaged",
			tamper: func(tl *testLog, txn *badger.Txn) error {
				item, err := txn.Get(tl.ks.key(kindEntry, 1))
				if err != nil {
					return err
				}
				v, _ := item.ValueCopy(nil)
				v[len(v)-1] ^= 1
				return txn.Set(tl.ks.key(kindEntry, 1), v)
			},
			check: func(t *testing.T, tl *testLog, openErr error) {
				if openErr != nil {
					t.Fatal(openErr)
				}
				if _, err := tl.Entry(1); !errors.Is(err, ErrCorrupt) {
					t.Errorf("Entry(1): %v, want ErrCorrupt", err)
				}
				if err := tl.Export(context.Background(), io.Discard, 0, 4); !errors.Is(err, ErrCorrupt) {
					t.Errorf("Export: %v, want ErrCorrupt", err)
				}
			},
		},
		{
			name: "tree hash changed",
			tamper: func(tl *testLog, txn *badger.Txn) error {
				// Entry 3 completes the subtree [0, 4): its stored hashes
				// include the root the checkpoint of size 4 signed.
				return txn.Set(tl.ks.key(kindTree, 3), make([]byte, 3*HashSize))
			},
			check: func(t *testing.T, tl *testLog, openErr error) {
				if !errors.Is(openErr, ErrCorrupt) {
					t.Fatalf("New: %v, want ErrCorrupt", openErr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTestLog(t, nil)
			appendN(t, tl.Log, 0, 4)
			if err := tl.Close(); err != nil { // signs a checkpoint of size 4
				t.Fatal(err)
			}
			if err := tl.db.Update(func(txn *badger.Txn) error { return tt.tamper(tl, txn) }); err != nil {
				t.Fatal(err)
			}
			l, err := New(tl.db.DB, tl.cfg)
			if err == nil {
				t.Cleanup(func() { l.Close() })
				tl = &testLog{Log: l, db: tl.db, dir: tl.dir, clock: tl.clock, cfg: tl.cfg, verify: tl.verify}
			}
			tt.check(t, tl, err)
		})
	}
}
