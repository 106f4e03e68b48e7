package audit

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jitgrant/jitgrant/internal/kv"
)

// footprintEnv selects the memory-footprint measurement: "1" runs it (each
// configuration in a child process of its own), a configuration name makes
// this process that child.
const footprintEnv = "JITGRANT_AUDIT_FOOTPRINT"

var footprintConfigs = map[string]kv.Config{
	// Badger's defaults: 64 MiB x 5 memtables, 256 MiB block cache, every
	// index in memory, 4 compactors, 1 GiB value-log files, Snappy.
	"badger-defaults": {MemTableSize: 64 << 20, NumMemtables: 5, BlockCacheSize: 256 << 20, IndexCacheSize: -1,
		NumCompactors: 4, ValueLogFileSize: 1<<30 - 1, ValueThreshold: 1 << 20},
	// The settings measured in the issue.
	"issue-8mb": {MemTableSize: 8 << 20, NumMemtables: 2, BlockCacheSize: 8 << 20, IndexCacheSize: 8 << 20,
		NumCompactors: 2, ValueLogFileSize: 64 << 20},
	// internal/kv's defaults.
	"kv-defaults": {},
}

// TestFootprint measures the resident memory of a process after 200,000
// small durable appends (32 writers) under each Badger configuration, before
// and after kv.DB.Trim (which the database runs every 30 s). Run:
//
//	JITGRANT_AUDIT_FOOTPRINT=1 go test -run TestFootprint -v ./audit
func TestFootprint(t *testing.T) {
	mode := os.Getenv(footprintEnv)
	if mode == "" {
		t.Skip("set " + footprintEnv + "=1 to measure")
	}
	if cfg, ok := footprintConfigs[mode]; ok {
		footprintChild(t, cfg)
		return
	}
	for _, name := range []string{"badger-defaults", "issue-8mb", "kv-defaults"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFootprint$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), footprintEnv+"="+name)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "footprint_test.go") {
				t.Logf("%-16s %s", name, line[strings.Index(line, " ")+1:])
			}
		}
	}
}

func footprintChild(t *testing.T, cfg kv.Config) {
	const total, writers = 200_000, 32
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.GCInterval = -1
	cfg.TrimInterval = -1 // trimmed once, explicitly, below
	db, err := kv.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := New(db.DB, benchConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := next.Add(1); i <= total; i = next.Add(1) {
				if _, err := l.Append(context.Background(), record(int(i)), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	report := func(when string) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		status, _ := os.ReadFile("/proc/self/status")
		field := func(name string) string {
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, name+":"); ok {
					return strings.Join(strings.Fields(v), " ")
				}
			}
			return "?"
		}
		t.Logf("after %d appends, %s: RSS %s (anon %s, file %s), peak %s; Go heap in use %d MiB, sys %d MiB",
			total, when, field("VmRSS"), field("RssAnon"), field("RssFile"), field("VmHWM"), ms.HeapInuse>>20, ms.Sys>>20)
	}
	report("untrimmed")
	// What the database's periodic trim (kv.Config.TrimInterval) does.
	if _, err := db.Trim(); err != nil {
		t.Fatal(err)
	}
	report("trimmed")
}
