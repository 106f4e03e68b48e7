package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jitgrant/jitgrant/internal/kv"
	"golang.org/x/mod/sumdb/note"
)

const (
	testOrigin = "jitgrant audit example.org"
	testActor  = "spiffe://example.org/jitd"
	testUser   = "spiffe://example.org/user/alice"
)

// testKeys returns a fixed key pair (derived from a fixed seed, so that
// signatures, and with them golden exports, are reproducible).
func testKeys(t testing.TB, name string, seed byte) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// testKeyStrings returns the encoded form of testKeys(t, "example.org/audit", 1).
func testKeyStrings(t testing.TB) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 32)), "example.org/audit")
	if err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func kvConfigForTests() kv.Config { return kv.Config{} }

// openDB opens a Badger database in dir for tests.
func openDB(t testing.TB, dir string, cfg kv.Config) *kv.DB {
	t.Helper()
	cfg.GCInterval = -1
	db, err := kv.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testLog bundles a log with its database and clock.
type testLog struct {
	*Log
	db     *kv.DB
	dir    string
	clock  *fakeClock
	cfg    Config
	verify note.Verifier
}

// newTestLog opens a log in a new directory. Checkpoints are off unless mod
// turns them on.
func newTestLog(t testing.TB, mod func(*Config)) *testLog {
	t.Helper()
	return openTestLog(t, t.TempDir(), newFakeClock(), mod)
}

func openTestLog(t testing.TB, dir string, clock *fakeClock, mod func(*Config)) *testLog {
	t.Helper()
	signer, verifier := testKeys(t, "example.org/audit", 1)
	cfg := Config{
		Signer: signer, Origin: testOrigin, Actor: testActor, Now: clock.Now,
		CheckpointEvery: -1, CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	db := openDB(t, dir, kv.Config{})
	l, err := New(db.DB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &testLog{Log: l, db: db, dir: dir, clock: clock, cfg: cfg, verify: verifier}
}

// sync waits until the writer has finished the work queued before it
// (including the checkpoints that follow a commit).
func (tl *testLog) sync(t testing.TB) {
	t.Helper()
	if err := tl.onWriter(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
}

// reopen closes the log and its database and opens them again.
func (tl *testLog) reopen(t testing.TB) *testLog {
	t.Helper()
	if err := tl.Close(); err != nil && !errors.Is(err, ErrFailed) {
		t.Fatal(err)
	}
	if err := tl.db.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := tl.cfg
	return openTestLog(t, tl.dir, tl.clock, func(c *Config) { *c = cfg })
}

func record(i int) Record {
	return Record{
		Actor: testUser, Action: ActionRequestCreated, Subject: fmt.Sprintf("req-%d", i),
		Details: map[string]string{"reason": fmt.Sprintf("ticket OPS-%d", i), "scope": "/ledger.v1.Ledger/Get"},
	}
}

func mustAppend(t testing.TB, l *Log, r Record) Entry {
	t.Helper()
	e, err := l.Append(context.Background(), r, nil)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return e
}

// appendN appends n records (record(start)...) one by one.
func appendN(t testing.TB, l *Log, start, n int) {
	t.Helper()
	for i := start; i < start+n; i++ {
		mustAppend(t, l, record(i))
	}
}

// export exports [from, to) and parses it back.
func export(t testing.TB, l *Log, from, to uint64) (*Export, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, from, to); err != nil {
		t.Fatalf("Export: %v", err)
	}
	ex, err := ParseExport(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("ParseExport: %v\n%s", err, buf.Bytes())
	}
	return ex, buf.Bytes()
}

// getKey reads a key straight from the database.
func getKey(t testing.TB, db *badger.DB, key string) ([]byte, bool) {
	t.Helper()
	var val []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if err == badger.ErrKeyNotFound {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return val, true
}
