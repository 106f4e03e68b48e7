package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Disk space.
//
// Badger writes its write-ahead logs (*.mem), value logs (*.vlog) and
// discard statistics (DISCARD) through shared memory maps of files it
// creates sparse (ftruncate allocates nothing), and writes each new table
// (*.sst) the same way. When the file system has no block left for a page
// that is written (on tmpfs, even read) through such a map, the kernel
// answers with SIGBUS, which kills the process: Go cannot turn a fault in
// Badger's goroutines into an error. So:
//
//  1. Every memory-mapped log file is allocated to its full length with
//     fallocate(2), without changing its length: right after Badger opens
//     (and creates its new write-ahead log and value log), then for the
//     files Badger creates later (a new write-ahead log when a memtable
//     fills, a new value log), before each write transaction (CheckWrite,
//     which lists the directory only when its times changed) and on every
//     background check. Badger has no hook to do it when it creates a
//     file, so the first transaction written into a new write-ahead log (at
//     most 15% of a memtable) lands in a sparse file: the reserve covers
//     it. An allocation always leaves a memtable flush's worth of space
//     (NumMemtables x MemTableSize + 1 MiB) free; a file that cannot be
//     allocated stays sparse and writes are refused.
//  2. Before each write transaction the file system must have
//     Config.DiskReserve free. The reserve covers what Badger writes on its
//     own after a transaction is accepted: the rest of that transaction,
//     flushing full memtables to tables, compaction, and the next
//     write-ahead log and value log files.
//  3. When either fails, CheckWrite returns a *DiskFullError (matching
//     ErrDiskFull) and the caller refuses the write; reads go on. A
//     background check every Config.DiskCheckInterval (and every
//     CheckWrite) measures again and accepts writes once space is back.
//  4. Opening a database read-write replays each write-ahead log,
//     truncates it to its data (freeing what was allocated past it) and
//     flushes it to a table. Open estimates that (openPlan) and, when the
//     free space cannot hold it: opens the database read-only if there is
//     no write-ahead log (Badger refuses read-only with one to replay);
//     Reopen's channel is closed once there is room, and the owner closes
//     and opens the database again, read-write. With a write-ahead log,
//     Open fails with an error matching ErrDiskFull and changes nothing.
//  5. Closing a read-write database flushes the memtable to a table. When
//     the free space cannot hold that, Close leaves the database open (the
//     process is about to exit; every committed transaction is in the
//     write-ahead log, replayed at the next Open) and says so.

// ErrDiskFull reports a write refused because the database's file system is
// (nearly) full. *DiskFullError matches it.
var ErrDiskFull = errors.New("kv: disk nearly full")

var (
	errNoSpace     = errors.New("no space left on device")
	errNoFallocate = errors.New("the file system does not support fallocate")
)

// DiskFullError describes a write refused for lack of disk space. Its text
// is meant for the client whose write was refused and for the operator.
type DiskFullError struct {
	// Dir is the database directory.
	Dir string
	// Free is the space free when measured, in bytes.
	Free int64
	// Reserve is the space that must stay free, in bytes.
	Reserve int64
	// Cause, when set, is the failure that made the space short (a file
	// that could not be allocated, or the measurement itself).
	Cause error
	// ReadOnly reports a database opened read-only for lack of space.
	ReadOnly bool
}

func (e *DiskFullError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "jitd: disk nearly full at %s: %d MiB free, needs %d MiB reserve", e.Dir, e.Free>>20, (e.Reserve+1<<20-1)>>20)
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	if e.ReadOnly {
		b.WriteString("; the database is open read-only: free space and jitd resumes by itself, reopening it")
	} else {
		b.WriteString("; free space and jitd resumes by itself")
	}
	return b.String()
}

// Is makes a *DiskFullError match ErrDiskFull.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// Unwrap returns the cause, if any.
func (e *DiskFullError) Unwrap() error { return e.Cause }

// DefaultDiskReserve returns the free space Open keeps by default for cfg's
// sizes: the next write-ahead log and value log files (Badger makes them
// twice MemTableSize and ValueLogFileSize), one table per memtable, and
// 16 MiB for compaction; at least 64 MiB.
func DefaultDiskReserve(cfg Config) int64 {
	cfg = withDefaults(cfg)
	r := 2*cfg.MemTableSize + 2*cfg.ValueLogFileSize + int64(cfg.NumMemtables)*cfg.MemTableSize + 16<<20
	return max(r, 64<<20)
}

// guard keeps the free-space reserve and the allocation of memory-mapped
// files of one database directory.
type guard struct {
	dir      string
	reserve  int64 // <= 0: no reserve, only allocation
	floor    int64 // free space allocation leaves for flushing memtables
	readOnly bool
	openNeed int64 // read-only: free space needed to reopen read-write
	log      *slog.Logger
	free     func(string) (int64, error)
	alloc    func(string, int64) error

	mu        sync.Mutex       // serializes checks
	allocated map[string]int64 // file name -> length allocated
	stamp     [2]int64         // the directory's mtime and ctime when nothing was left to allocate
	noFalloc  bool             // the file system refused fallocate; warned once
	reopen    chan struct{}    // read-only: closed when there is room
	reopenOne sync.Once

	refused     atomic.Pointer[DiskFullError] // non-nil while writes are refused
	lastFree    atomic.Int64
	refusals    atomic.Uint64 // writes refused
	transitions atomic.Uint64 // accepting -> refusing
}

// dirStamp returns dir's modification and change times, in nanoseconds.
func dirStamp(dir string) ([2]int64, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return [2]int64{}, err
	}
	return [2]int64{info.ModTime().UnixNano(), changeTime(info)}, nil
}

// mmapped reports whether Badger writes the file named name through a
// memory map that it creates sparse.
func mmapped(name string) bool {
	return strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog") || name == "DISCARD"
}

// allocateAll allocates every memory-mapped file of the directory not yet
// allocated to its current length, as long as free (the free space) stays
// at or above g.floor, the room Badger's flushes need: a file it cannot
// allocate stays sparse and the returned error refuses writes. Files that
// vanish meanwhile (Badger deletes flushed write-ahead logs) are skipped.
// Call with g.mu held.
func (g *guard) allocateAll(free int64) (grew bool, err error) {
	entries, err := os.ReadDir(g.dir)
	if err != nil {
		return false, err
	}
	seen := make(map[string]bool, len(g.allocated))
	var short error
	for _, e := range entries {
		name := e.Name()
		if !mmapped(name) {
			continue
		}
		seen[name] = true
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return grew, err
		}
		grow := info.Size() - max(g.allocated[name], allocatedBytes(info))
		if grow <= 0 {
			g.allocated[name] = info.Size() // allocated already (an earlier run)
			continue
		}
		if g.noFalloc {
			continue
		}
		if free-grow < g.floor {
			if short == nil {
				short = fmt.Errorf("no room to allocate %s (%d MiB) and keep %d MiB for flushing memtables", name, grow>>20, g.floor>>20)
			}
			continue
		}
		switch err := g.alloc(filepath.Join(g.dir, name), info.Size()); {
		case err == nil:
			g.allocated[name] = info.Size()
			free -= grow
			grew = true
		case errors.Is(err, os.ErrNotExist):
		case errors.Is(err, errNoFallocate):
			g.noFalloc = true
			g.log.Warn("kv: cannot allocate memory-mapped files; relying on the free-space reserve alone",
				"dir", g.dir, "err", err)
		default:
			return grew, fmt.Errorf("allocating %s (%d MiB): %w", name, info.Size()>>20, err)
		}
	}
	for name := range g.allocated {
		if !seen[name] {
			delete(g.allocated, name)
		}
	}
	return grew, short
}

// check measures the free space, allocates new memory-mapped files, and
// updates the state: it returns nil when writes may proceed, else the
// *DiskFullError that refuses them. Transitions are logged once each.
//
// With full unset (before each write transaction) the directory is listed
// only when its modification or change time moved since the last listing
// that left nothing to do: a cheap stat instead of a listing and a stat
// per file. A file created within the same clock tick as that listing
// waits for the next change or the next full check (the background one),
// and meanwhile the reserve covers it.
func (g *guard) check(full bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	free, err := g.free(g.dir)
	var cause error
	if err != nil {
		cause = fmt.Errorf("measuring free space: %w", err)
	} else if !g.readOnly {
		stamp, serr := dirStamp(g.dir)
		if full || serr != nil || stamp != g.stamp {
			var grew bool
			grew, cause = g.allocateAll(free)
			g.stamp = [2]int64{}
			if cause == nil && serr == nil {
				g.stamp = stamp
			}
			if grew && cause == nil {
				if free, err = g.free(g.dir); err != nil {
					cause = fmt.Errorf("measuring free space: %w", err)
				}
			}
		}
	}
	g.lastFree.Store(free)
	need := g.reserve
	if g.readOnly {
		need = g.openNeed
	}
	if cause == nil && free >= need && !g.readOnly {
		if prev := g.refused.Swap(nil); prev != nil {
			g.log.Info("kv: disk space is back; accepting writes", "dir", g.dir, "free_mib", free>>20, "reserve_mib", need>>20)
		}
		return nil
	}
	if g.readOnly && cause == nil && free >= need {
		g.reopenOne.Do(func() {
			g.log.Info("kv: disk space is back; the database can be reopened read-write", "dir", g.dir, "free_mib", free>>20)
			close(g.reopen)
		})
	}
	e := &DiskFullError{Dir: g.dir, Free: free, Reserve: need, Cause: cause, ReadOnly: g.readOnly}
	if prev := g.refused.Swap(e); prev == nil {
		g.transitions.Add(1)
		g.log.Error("kv: disk nearly full; refusing writes, serving reads", "dir", g.dir, "free_mib", free>>20,
			"reserve_mib", (need+1<<20-1)>>20, "read_only", g.readOnly, "err", cause)
	}
	return e
}

// openPlan decides how Open may open dir with free bytes free. Opening
// read-write replays every write-ahead log (*.mem), truncating it to its
// data (which frees what was allocated past it), flushes each to a new
// table (about its data's size; a quarter more is counted) and writes the
// first page of a new write-ahead log and value log. Badger opens
// read-only only when there is no write-ahead log to replay. It returns
// readOnly, or an error matching ErrDiskFull when neither way fits.
func openPlan(dir string, free int64) (readOnly bool, need int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, 0, err
	}
	// Without reading the logs: each holds at most its length of data.
	need = 1 << 20
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".mem") {
			need += info.Size() + info.Size()/4
		}
	}
	if free >= need {
		return false, need, nil
	}
	need = 1 << 20
	avail, logs := free, 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		logs++
		end, allocated, err := walSpace(filepath.Join(dir, e.Name()))
		if err != nil {
			return false, 0, err
		}
		need += end + end/4
		const page = 4096
		avail += max(allocated-(end+page-1)/page*page, 0)
	}
	switch {
	case avail >= need:
		return false, need, nil
	case logs == 0:
		return true, need, nil
	}
	return false, need, fmt.Errorf("kv: open: %w", &DiskFullError{Dir: dir, Free: free, Reserve: need,
		Cause: fmt.Errorf("replaying %d write-ahead logs writes tables, and Badger opens read-only only without them", logs)})
}

// CheckWrite measures the free space and allocates the memory-mapped files
// Badger created since the last check. It returns nil when a write
// transaction may proceed, else a *DiskFullError (matching ErrDiskFull)
// whose text says what is short and that writes resume by themselves. Call
// it before every write transaction; all writes of this package's callers
// go through one writer, so the check and the transaction do not
// interleave with another's.
func (db *DB) CheckWrite() error {
	err := db.guard.check(false)
	if err != nil {
		db.guard.refusals.Add(1)
	}
	return err
}

// Writable returns the state of the latest check without measuring again:
// nil when writes are accepted, else the *DiskFullError refusing them.
func (db *DB) Writable() error {
	if e := db.guard.refused.Load(); e != nil {
		return e
	}
	return nil
}

// ReadOnly reports whether Open opened the database read-only for lack of
// space.
func (db *DB) ReadOnly() bool { return db.guard.readOnly }

// Reopen returns a channel closed once a database opened read-only for lack
// of space can be opened read-write: the owner should then Close it and
// Open it again. For a read-write database it is never closed.
func (db *DB) Reopen() <-chan struct{} { return db.guard.reopen }

// Collector returns the database's disk-space metrics:
// jitgrant_store_disk_free_bytes, jitgrant_store_disk_reserve_bytes,
// jitgrant_store_writable (0 while writes are refused) and
// jitgrant_store_writes_refused_total.
func (db *DB) Collector() prometheus.Collector { return spaceCollector{db} }

var (
	descFree     = prometheus.NewDesc("jitgrant_store_disk_free_bytes", "Free space in the database's file system at the latest check.", nil, nil)
	descReserve  = prometheus.NewDesc("jitgrant_store_disk_reserve_bytes", "Free space the database keeps before accepting a write.", nil, nil)
	descWritable = prometheus.NewDesc("jitgrant_store_writable", "1 while the database accepts writes, 0 while it refuses them for lack of disk space.", nil, nil)
	descRefused  = prometheus.NewDesc("jitgrant_store_writes_refused_total", "Write transactions refused for lack of disk space.", nil, nil)
	descFull     = prometheus.NewDesc("jitgrant_store_disk_full_total", "Times the database started refusing writes for lack of disk space.", nil, nil)
)

type spaceCollector struct{ db *DB }

func (c spaceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFree
	ch <- descReserve
	ch <- descWritable
	ch <- descRefused
	ch <- descFull
}

func (c spaceCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.db.guard
	writable := 1.0
	if g.refused.Load() != nil {
		writable = 0
	}
	ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(g.lastFree.Load()))
	ch <- prometheus.MustNewConstMetric(descReserve, prometheus.GaugeValue, float64(max(g.reserve, 0)))
	ch <- prometheus.MustNewConstMetric(descWritable, prometheus.GaugeValue, writable)
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(g.refusals.Load()))
	ch <- prometheus.MustNewConstMetric(descFull, prometheus.CounterValue, float64(g.transitions.Load()))
}
