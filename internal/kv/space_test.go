package kv

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSpace is a free-space figure tests set.
type fakeSpace struct{ free atomic.Int64 }

func (f *fakeSpace) measure(string) (int64, error) { return f.free.Load(), nil }

func set(t *testing.T, db *DB, k, v string) error {
	t.Helper()
	if err := db.CheckWrite(); err != nil {
		return err
	}
	return db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(k), []byte(v)) })
}

func get(t *testing.T, db *DB, k string) string {
	t.Helper()
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(k))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("reading %q: %v", k, err)
	}
	return string(v)
}

// TestCheckWriteReserve: writes are refused, with a message that says what is
// short, while the free space is under the reserve, and accepted again once
// the background check sees space back.
func TestCheckWriteReserve(t *testing.T) {
	const reserve = 64 << 20
	tests := []struct {
		name    string
		free    int64
		refused bool
	}{
		{"plenty", 1 << 30, false},
		{"exactly the reserve", reserve, false},
		{"one byte short", reserve - 1, true},
		{"nothing free", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			space := &fakeSpace{}
			space.free.Store(1 << 30)
			tick, done := make(chan time.Time), make(chan error)
			dir := t.TempDir()
			db := open(t, dir, Config{GCInterval: -1, DiskReserve: reserve, freeSpace: space.measure, diskTick: tick, diskDone: done})
			if err := set(t, db, "a", "1"); err != nil {
				t.Fatalf("write with space: %v", err)
			}
			space.free.Store(tt.free)
			err := set(t, db, "b", "2")
			if !tt.refused {
				if err != nil {
					t.Fatalf("write refused: %v", err)
				}
				return
			}
			var dfe *DiskFullError
			if !errors.Is(err, ErrDiskFull) || !errors.As(err, &dfe) {
				t.Fatalf("write with %d bytes free: %v, want a *DiskFullError", tt.free, err)
			}
			for _, want := range []string{"disk nearly full at " + dir, "needs 64 MiB reserve", "resumes by itself"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
			if db.Writable() == nil {
				t.Error("Writable() is nil while writes are refused")
			}
			want := "# HELP jitgrant_store_writable 1 while the database accepts writes, 0 while it refuses them for lack of disk space.\n" +
				"# TYPE jitgrant_store_writable gauge\njitgrant_store_writable 0\n"
			if err := testutil.CollectAndCompare(db.Collector(), strings.NewReader(want), "jitgrant_store_writable"); err != nil {
				t.Errorf("metrics while refusing: %v", err)
			}
			if err := db.RunGC(); !errors.Is(err, ErrDiskFull) {
				t.Errorf("RunGC while refusing: %v, want ErrDiskFull", err)
			}
			if got := get(t, db, "a"); got != "1" {
				t.Errorf("read while refusing: %q", got)
			}
			// Space comes back: the background check alone re-enables writes.
			space.free.Store(reserve)
			tick <- time.Time{}
			if err := <-done; err != nil {
				t.Fatalf("background check with space back: %v", err)
			}
			if err := db.Writable(); err != nil {
				t.Fatalf("Writable() after space came back: %v", err)
			}
			if err := set(t, db, "b", "2"); err != nil {
				t.Fatalf("write after space came back: %v", err)
			}
		})
	}
}

// TestMmappedFilesAllocated: the files Badger writes through memory maps
// (write-ahead logs, value logs, discard stats) are fully allocated, at
// Open and when Badger creates new ones, so that a full file system cannot
// fault a write into them.
func TestMmappedFilesAllocated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("allocation uses fallocate(2), Linux only")
	}
	dir := t.TempDir()
	// 1 MiB memtables: a few writes make Badger create new write-ahead logs.
	db := open(t, dir, Config{GCInterval: -1, MemTableSize: 1 << 20, DiskReserve: -1, AsyncWrites: true})
	val := strings.Repeat("x", 1000)
	for i := range 3000 {
		if err := set(t, db, "k"+strings.Repeat("0", 6-len(itoa(i)))+itoa(i), val); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		if !mmapped(e.Name()) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks*512 < st.Size {
			t.Errorf("%s: %d of %d bytes allocated", e.Name(), st.Blocks*512, st.Size)
		}
		checked++
	}
	if checked < 3 {
		t.Errorf("checked %d memory-mapped files, want at least a .mem, a .vlog and DISCARD", checked)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestOpenReadOnlyWhenFull: a database opened without the room to replay
// and flush its write-ahead logs opens read-only: reads served, writes
// refused with a message saying so, and Reopen closed once space is back.
func TestOpenReadOnlyWhenFull(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Config{GCInterval: -1, DiskReserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := set(t, db, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	space := &fakeSpace{}
	tick, done := make(chan time.Time), make(chan error)
	db = open(t, dir, Config{GCInterval: -1, freeSpace: space.measure, diskTick: tick, diskDone: done})
	if !db.ReadOnly() {
		t.Fatal("opened read-write with no space free")
	}
	if got := get(t, db, "a"); got != "1" {
		t.Errorf("read: %q, want 1", got)
	}
	err = db.CheckWrite()
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "resumes by itself, reopening it") {
		t.Errorf("CheckWrite on a read-only database: %v", err)
	}
	select {
	case <-db.Reopen():
		t.Fatal("Reopen closed with no space free")
	default:
	}
	space.free.Store(1 << 30)
	tick <- time.Time{}
	<-done
	select {
	case <-db.Reopen():
	default:
		t.Fatal("Reopen not closed after space came back")
	}
}

// TestCloseWithoutSpaceLeavesOpen: Close on a full file system does not
// flush the memtable (a SIGBUS) and says why; the write-ahead log keeps the
// writes for the next Open.
func TestCloseWithoutSpaceLeavesOpen(t *testing.T) {
	dir := t.TempDir()
	space := &fakeSpace{}
	space.free.Store(1 << 30)
	db, err := Open(dir, Config{GCInterval: -1, freeSpace: space.measure})
	if err != nil {
		t.Fatal(err)
	}
	if err := set(t, db, "a", "1"); err != nil {
		t.Fatal(err)
	}
	space.free.Store(0)
	if err := db.Close(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Close with no space: %v, want ErrDiskFull", err)
	}
	if db.DB.IsClosed() {
		t.Fatal("Close flushed and closed Badger with no space free")
	}
	// The process would exit here; release what it holds instead.
	if err := db.DB.Close(); err != nil {
		t.Fatalf("closing Badger after the test: %v", err)
	}
}

// TestOpenPlan: how Open opens a database whose write-ahead log must be
// replayed (and flushed to a table) when the disk is (nearly) full.
func TestOpenPlan(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads allocation figures of Linux file systems")
	}
	const size = 4 << 20
	tests := []struct {
		name     string
		wal      bool  // there is a write-ahead log
		alloc    bool  // it is fully allocated (as CheckWrite leaves it)
		free     int64 // at Open
		readOnly bool
		wantErr  bool
	}{
		{"plenty of space", true, false, 1 << 30, false, false},
		{"full, allocated log frees room when truncated", true, true, 0, false, false},
		{"full, sparse log", true, false, 0, false, true},
		{"full, no log: read-only", false, false, 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.wal {
				path := filepath.Join(dir, "00001.mem")
				if err := os.WriteFile(path, []byte(strings.Repeat("x", 3000)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, size); err != nil {
					t.Fatal(err)
				}
				if tt.alloc {
					if err := allocate(path, size); err != nil {
						t.Skipf("fallocate: %v", err)
					}
				}
			}
			readOnly, need, err := openPlan(dir, tt.free)
			if (err != nil) != tt.wantErr || readOnly != tt.readOnly {
				t.Fatalf("openPlan with %d free: read-only %v, error %v", tt.free, readOnly, err)
			}
			if err != nil && (!errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "write-ahead log")) {
				t.Errorf("error %v does not match ErrDiskFull or does not say why", err)
			}
			if need <= 0 {
				t.Errorf("need %d", need)
			}
		})
	}
}
