package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/kv"
)

// benchDirs are directories cached across benchmark runs, removed by TestMain.
var benchDirs struct {
	sync.Mutex
	dirs []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	benchDirs.Lock()
	for _, d := range benchDirs.dirs {
		os.RemoveAll(d)
	}
	benchDirs.Unlock()
	os.Exit(code)
}

func benchDir(b *testing.B) string {
	dir, err := os.MkdirTemp("", "audit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs.Lock()
	benchDirs.dirs = append(benchDirs.dirs, dir)
	benchDirs.Unlock()
	return dir
}

func benchConfig(b testing.TB) Config {
	signer, _ := testKeys(b, "example.org/audit", 1)
	return Config{Signer: signer, Origin: testOrigin, Actor: testActor, Logger: slog.New(slog.DiscardHandler)}
}

// BenchmarkAppend measures durable appends (synced commits, checkpoints every
// 1,000 entries as by default) with one writer and with 32 concurrent
// writers sharing group commits.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("durable-%d", writers), func(b *testing.B) {
			db := openDB(b, b.TempDir(), kv.Config{})
			l, err := New(db.DB, benchConfig(b))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			rec := record(1)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := l.Append(context.Background(), rec, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			st := l.Stats()
			b.ReportMetric(float64(st.Appended)/float64(max(st.GroupSize.Count, 1)), "entries/commit")
		})
	}
}

// BenchmarkFsync is the baseline for durable appends: one 4 KiB write and
// fsync on the disk the benchmarks run on.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// bulkAppend appends n records in large groups straight through the writer's
// commit path (used to build big logs quickly).
func bulkAppend(tb testing.TB, l *Log, n int) {
	const batch = 4096
	for done := 0; done < n; {
		k := min(batch, n-done)
		ps := make([]*pending, k)
		for i := range ps {
			ps[i] = &pending{recs: []Record{record(done + i)}, res: make(chan result, 1)}
			ps[i].state.Store(stateTaken)
		}
		err := l.onWriter(context.Background(), func() {
			for rest := ps; len(rest) > 0; {
				rest = rest[l.commitPrefix(rest):]
			}
		})
		if err != nil {
			tb.Fatal(err)
		}
		for _, p := range ps {
			if r := <-p.res; r.err != nil {
				tb.Fatal(r.err)
			}
		}
		done += k
	}
}

// buildLog creates a log of n entries in a new directory and closes it.
func buildLog(tb testing.TB, dir string, n int) {
	db, err := kv.Open(dir, kv.Config{AsyncWrites: true, GCInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := benchConfig(tb)
	cfg.CheckpointEvery, cfg.CheckpointInterval = -1, -1
	l, err := New(db.DB, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	bulkAppend(tb, l, n)
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

var verifyExport struct {
	once sync.Once
	raw  []byte
}

// BenchmarkVerify measures offline verification of a 100,000-entry export,
// parsing included, as an auditor runs it.
func BenchmarkVerify(b *testing.B) {
	const n = 100_000
	verifyExport.once.Do(func() {
		dir := benchDir(b)
		buildLog(b, dir, n)
		db := openDB(b, dir, kv.Config{})
		l, err := New(db.DB, benchConfig(b))
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		if err := l.Export(context.Background(), &buf, 0, n); err != nil {
			b.Fatal(err)
		}
		l.Close()
		verifyExport.raw = buf.Bytes()
	})
	_, key := testKeys(b, "example.org/audit", 1)
	b.SetBytes(int64(len(verifyExport.raw)))
	b.ReportAllocs()
	for b.Loop() {
		ex, err := ParseExport(bytes.NewReader(verifyExport.raw))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Verify(ex, key, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

var proveLog struct {
	once sync.Once
	dir  string
}

// BenchmarkProve measures one inclusion proof in a 1,000,000-entry log,
// opened with the daemon's database settings.
func BenchmarkProve(b *testing.B) {
	const n = 1_000_000
	proveLog.once.Do(func() {
		proveLog.dir = benchDir(b)
		buildLog(b, proveLog.dir, n)
	})
	db := openDB(b, proveLog.dir, kv.Config{})
	l, err := New(db.DB, benchConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	cp, err := l.Sign(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		seq := rng.Uint64N(n)
		if _, err := l.ProveInclusion(seq, n); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p, _ := l.ProveInclusion(123457, n)
	e, _ := l.Entry(123457)
	if err := CheckInclusion(p, cp, &e); err != nil {
		b.Fatal(err)
	}
}
