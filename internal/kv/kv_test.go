package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func open(t *testing.T, dir string, cfg Config) *DB {
	t.Helper()
	db, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(o badger.Options) error
	}{
		{"sync by default", Config{}, func(o badger.Options) error {
			if !o.SyncWrites {
				return errors.New("SyncWrites is off")
			}
			return nil
		}},
		{"async when asked", Config{AsyncWrites: true}, func(o badger.Options) error {
			if o.SyncWrites {
				return errors.New("SyncWrites is on")
			}
			return nil
		}},
		{"small daemon sizes", Config{}, func(o badger.Options) error {
			if o.MemTableSize != DefaultMemTableSize || o.NumMemtables != DefaultNumMemtables ||
				o.IndexCacheSize != DefaultIndexCacheSize || o.NumCompactors != DefaultNumCompactors ||
				o.ValueLogFileSize != DefaultValueLogFileSize || o.ValueThreshold != DefaultValueThreshold ||
				o.BlockCacheSize != 0 || o.MetricsEnabled {
				return fmt.Errorf("unexpected options %+v", o)
			}
			return nil
		}},
		{"overrides", Config{MemTableSize: 16 << 20, NumMemtables: 3, IndexCacheSize: -1, BlockCacheSize: 1 << 20}, func(o badger.Options) error {
			if o.MemTableSize != 16<<20 || o.NumMemtables != 3 || o.IndexCacheSize != 0 || o.BlockCacheSize != 1<<20 {
				return fmt.Errorf("overrides not applied: %+v", o)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check(Options("/x", tt.cfg)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOpenLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Config{GCInterval: -1})
	_, err := Open(dir, Config{GCInterval: -1})
	if err == nil {
		t.Fatal("second Open of the same directory succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not match ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.HasPrefix(err.Error(), "kv: ") {
		t.Errorf("error %q should start with kv: and name %s", err, dir)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		dir  string
	}{
		{"empty name", ""},
		{"not a directory", "/dev/null/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(tt.dir, Config{GCInterval: -1})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, ErrLocked) || !strings.HasPrefix(err.Error(), "kv: ") {
				t.Errorf("unexpected error %v", err)
			}
		})
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Config{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("v"), 2*DefaultValueThreshold) // goes to the value log
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte("small"), []byte("1")); err != nil {
			return err
		}
		return txn.Set([]byte("big"), big)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	db = open(t, dir, Config{GCInterval: -1})
	err = db.View(func(txn *badger.Txn) error {
		for k, want := range map[string][]byte{"small": []byte("1"), "big": big} {
			item, err := txn.Get([]byte(k))
			if err != nil {
				return err
			}
			got, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s: got %d bytes, want %d", k, len(got), len(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGCLoop(t *testing.T) {
	tick := make(chan time.Time)
	done := make(chan error)
	cfg := Config{ValueLogFileSize: 1 << 20, AsyncWrites: true, gcTick: tick, gcDone: done}
	db := open(t, t.TempDir(), cfg)

	// Fill several value-log files, then overwrite everything so that the
	// old files are garbage.
	val := bytes.Repeat([]byte("x"), 16<<10)
	for round := range 2 {
		for i := range 200 {
			err := db.Update(func(txn *badger.Txn) error {
				return txn.Set(fmt.Appendf(nil, "k%03d", i), append(val, byte(round)))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 2 {
		tick <- time.Time{}
		if err := <-done; err != nil {
			t.Fatalf("GC pass: %v", err)
		}
	}
}

type captureHandler struct {
	level slog.Level
	recs  *[]slog.Record
}

func (h captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	*h.recs = append(*h.recs, r)
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }

func TestLoggerLevels(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		log   func(l slogLogger)
		want  []slog.Level
	}{
		{"error", slog.LevelInfo, func(l slogLogger) { l.Errorf("disk %s\n", "gone") }, []slog.Level{slog.LevelError}},
		{"warning", slog.LevelInfo, func(l slogLogger) { l.Warningf("slow") }, []slog.Level{slog.LevelWarn}},
		{"info is silenced at info", slog.LevelInfo, func(l slogLogger) { l.Infof("tables opened") }, nil},
		{"info shows at debug", slog.LevelDebug, func(l slogLogger) { l.Infof("tables opened") }, []slog.Level{slog.LevelDebug}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []slog.Record
			tt.log(slogLogger{slog.New(captureHandler{tt.level, &recs})})
			if len(recs) != len(tt.want) {
				t.Fatalf("got %d records, want %d", len(recs), len(tt.want))
			}
			for i, r := range recs {
				if r.Level != tt.want[i] || strings.HasSuffix(r.Message, "\n") {
					t.Errorf("record %d: level %v message %q", i, r.Level, r.Message)
				}
			}
		})
	}
}

// tablesResident returns the resident bytes of each mapping of db's table
// files (by address range), from /proc/self/smaps.
func tablesResident(t *testing.T, db *DB) map[string]int64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	out := map[string]int64{}
	cur := ""
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = ""
			if len(f) >= 6 && filepath.Dir(f[5]) == db.absDir && strings.HasSuffix(f[5], ".sst") {
				cur = f[0]
			}
		case len(f) == 3 && f[0] == "Rss:" && cur != "":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[cur] = kb << 10
		}
	}
	return out
}

// TestTrim checks that Trim drops the tables Badger wrote from the
// process's resident memory and that their contents stay readable.
func TestTrim(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Trim works on Linux only")
	}
	db := open(t, t.TempDir(), Config{AsyncWrites: true, GCInterval: -1, TrimInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	// With two 2 MiB memtables, writing 12 MiB waits for flushes: at least
	// four tables are written (through their memory maps) before the end.
	const n, size = 12 << 10, 1 << 10
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	for i := 0; i < n; i += 100 {
		err := db.Update(func(txn *badger.Txn) error {
			for j := i; j < i+100; j++ {
				if err := txn.Set(fmt.Appendf(nil, "k%06d", j), val(j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Compactions may add and remove tables meanwhile: compare the tables
	// that were there before Trim.
	before := tablesResident(t, db)
	var was int64
	for _, rss := range before {
		was += rss
	}
	if was < 1<<20 {
		t.Fatalf("tables resident after writing 12 MiB: %d bytes, want at least 1 MiB", was)
	}
	advised, err := db.Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := tablesResident(t, db)
	var is int64
	for r := range before {
		is += after[r]
	}
	if advised == 0 || is > was/4 {
		t.Errorf("Trim advised %d bytes; resident tables %d -> %d bytes, want at most a quarter left", advised, was, is)
	}
	err = db.View(func(txn *badger.Txn) error {
		for i := range n {
			item, err := txn.Get(fmt.Appendf(nil, "k%06d", i))
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(v, val(i)) {
				return fmt.Errorf("key %d: value changed after Trim", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
