// Package kv opens the Badger database in which jitd keeps its state and its
// audit log, with settings chosen for a small, long-running daemon rather than
// for Badger's defaults (which target large servers).
//
// One database is shared: the issuer's store and the audit log live in the same
// Badger directory under different key prefixes, so that a state change and its
// audit entry can commit in one transaction.
//
// What Open sets, and why:
//
//   - Writes are synced (SyncWrites) unless Config.AsyncWrites is set: a
//     committed transaction survives kill -9 and power loss.
//   - Two 2 MiB memtables, 1 MiB tables at every level (Badger's default
//     doubles them per level, and compaction buffers with them), no block
//     cache (compression is off, so blocks are read straight from the
//     memory-mapped tables), a 2 MiB cache of table indexes and bloom
//     filters, two compactors, 4 MiB value-log files and a 4 KiB value
//     threshold (small values live in the LSM tree, larger ones in the value
//     log; Badger makes each value-log file, and each write-ahead log, twice
//     its nominal size, and Open allocates them in full: see space.go, so
//     the value log is kept small). Measured after 200,000 small durable
//     appends, with 16 MiB value-log files (median RSS, anonymous part in
//     brackets): 138 MB [61 MB] with these, 195 MB
//     [118 MB] with 8 MB memtables and caches, 323 MB [246 MB] with
//     Badger's defaults; see audit/BENCHMARKS.md. The file-backed rest is
//     the memory-mapped tables, which the trim below reclaims (69 MB after
//     it). Much of the anonymous part is Go heap headroom; a daemon that
//     wants a bound sets GOMEMLIMIT.
//   - One transaction can hold about 15% of a memtable (300 KB with the
//     defaults); larger ones fail with badger.ErrTxnTooBig.
//   - Badger's own metrics (process-wide expvar variables) are off.
//   - Badger's log lines go to a *slog.Logger, its chatty info level mapped to
//     debug.
//   - A value-log garbage collection pass runs every Config.GCInterval until
//     Close.
//   - Every Config.TrimInterval (30 s), DB.Trim has the kernel reclaim the
//     pages of the table files this process mapped: Badger writes every
//     table through a memory map, so each one would otherwise stay resident
//     (as page cache counted in RSS and in a cgroup's memory) for as long as
//     it lives. After 200,000 audit entries that is the whole 77 MB
//     database, of 132 MB RSS; trimmed, 69 MB (medians, audit/BENCHMARKS.md).
//
// When the directory is held by another process, Open fails with an error
// that names the directory and matches ErrLocked.
//
// A full file system must not kill the process (Badger writes through
// memory maps, and a page that cannot be allocated is a SIGBUS): see
// space.go for how Open, CheckWrite and Close keep a free-space reserve and
// allocate memory-mapped files, and DiskFullError for what a refused write
// says.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrLocked reports that another process holds the database directory.
var ErrLocked = errors.New("database directory is locked by another process")

// Defaults applied by Open for zero Config fields.
const (
	DefaultMemTableSize     = 2 << 20
	DefaultNumMemtables     = 2
	DefaultIndexCacheSize   = 2 << 20
	DefaultNumCompactors    = 2
	DefaultValueLogFileSize = 4 << 20
	DefaultValueThreshold   = 4 << 10
	DefaultGCInterval       = 10 * time.Minute
	DefaultGCDiscardRatio   = 0.5
	DefaultDiskCheck        = time.Second
	DefaultTrimInterval     = 30 * time.Second
)

// Config tunes Open. The zero value selects the defaults described in the
// package documentation.
type Config struct {
	// MemTableSize is the size of one memtable. It also bounds a single
	// transaction to about 15% of it (Badger's ErrTxnTooBig).
	MemTableSize int64
	// NumMemtables is how many memtables (one active, the rest flushing)
	// are kept.
	NumMemtables int
	// BlockCacheSize is the size of the cache of decompressed table blocks.
	// Zero keeps none, which suits uncompressed tables.
	BlockCacheSize int64
	// IndexCacheSize bounds the memory used for table indexes and bloom
	// filters. Negative keeps every index in memory (Badger's default).
	IndexCacheSize int64
	// NumCompactors is the number of compaction goroutines (at least 2).
	NumCompactors int
	// ValueLogFileSize is the size of one value-log file (Badger's files
	// are twice that on disk, allocated in full). It also bounds the size
	// of one value.
	ValueLogFileSize int64
	// ValueThreshold is the value size from which values are stored in the
	// value log instead of the LSM tree.
	ValueThreshold int64
	// AsyncWrites turns off the sync on commit. A crash can then lose
	// committed transactions; use it only in tests that do not test
	// durability.
	AsyncWrites bool
	// GCInterval is the period of the value-log garbage collection pass.
	// Negative disables it.
	GCInterval time.Duration
	// GCDiscardRatio is the fraction of a value-log file that must be
	// garbage before the file is rewritten, in (0, 1).
	GCDiscardRatio float64
	// TrimInterval is the period of DB.Trim, which drops the pages of
	// Badger's table files from the process's memory. Negative disables it.
	TrimInterval time.Duration
	// Logger receives Badger's warnings and errors (info as debug). Nil uses
	// slog.Default().
	Logger *slog.Logger
	// DiskReserve is the free space, in bytes, that the database's file
	// system must have for CheckWrite to accept a write. Zero selects
	// DefaultDiskReserve; negative keeps no reserve (memory-mapped files
	// are still allocated).
	DiskReserve int64
	// DiskCheckInterval is the period of the background free-space check
	// that re-enables writes once space is back. Default DefaultDiskCheck.
	DiskCheckInterval time.Duration

	// gcTick, when set (tests), replaces the GC ticker.
	gcTick <-chan time.Time
	// gcDone, when set (tests), receives after every GC pass.
	gcDone chan<- error
	// diskTick, when set (tests), replaces the free-space check's ticker.
	diskTick <-chan time.Time
	// diskDone, when set (tests), receives after every background check.
	diskDone chan<- error
	// freeSpace, when set (tests), replaces the free-space measurement.
	freeSpace func(dir string) (int64, error)
}

// DB is an open Badger database with its value-log GC loop. Use the embedded
// *badger.DB for transactions; call Close on DB, not on the embedded value,
// so that the GC loop stops first.
type DB struct {
	*badger.DB

	guard     *guard
	flushNeed int64 // free space Close needs to flush the memtables
	dir       string
	absDir    string
	ratio     float64
	log       *slog.Logger
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Options returns the Badger options Open uses for dir and cfg. It is
// exported so that tools and tests can see, and log, the exact settings.
func Options(dir string, cfg Config) badger.Options {
	cfg = withDefaults(cfg)
	indexCache := cfg.IndexCacheSize
	if indexCache < 0 {
		indexCache = 0 // Badger: 0 means keep all indexes in memory.
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(!cfg.AsyncWrites).
		WithLogger(slogLogger{cfg.Logger}).
		WithMetricsEnabled(false).
		WithCompression(options.None).
		WithMemTableSize(cfg.MemTableSize).
		WithNumMemtables(cfg.NumMemtables).
		WithBaseTableSize(max(cfg.MemTableSize/2, 1<<20)).
		WithBlockCacheSize(cfg.BlockCacheSize).
		WithIndexCacheSize(indexCache).
		WithNumCompactors(cfg.NumCompactors).
		WithValueLogFileSize(cfg.ValueLogFileSize).
		WithValueThreshold(cfg.ValueThreshold).
		WithNumGoroutines(2)
	// Keep every table at BaseTableSize: with the default multiplier of 2,
	// deep levels use tables (and compaction buffers twice their size) of
	// tens of megabytes.
	opts.TableSizeMultiplier = 1
	return opts
}

func withDefaults(cfg Config) Config {
	if cfg.MemTableSize <= 0 {
		cfg.MemTableSize = DefaultMemTableSize
	}
	if cfg.NumMemtables <= 0 {
		cfg.NumMemtables = DefaultNumMemtables
	}
	if cfg.BlockCacheSize < 0 {
		cfg.BlockCacheSize = 0
	}
	if cfg.IndexCacheSize == 0 {
		cfg.IndexCacheSize = DefaultIndexCacheSize
	}
	if cfg.NumCompactors <= 0 {
		cfg.NumCompactors = DefaultNumCompactors
	}
	if cfg.ValueLogFileSize <= 0 {
		cfg.ValueLogFileSize = DefaultValueLogFileSize
	}
	if cfg.ValueThreshold <= 0 {
		cfg.ValueThreshold = DefaultValueThreshold
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	if cfg.TrimInterval == 0 {
		cfg.TrimInterval = DefaultTrimInterval
	}
	if cfg.GCDiscardRatio <= 0 || cfg.GCDiscardRatio >= 1 {
		cfg.GCDiscardRatio = DefaultGCDiscardRatio
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DiskCheckInterval <= 0 {
		cfg.DiskCheckInterval = DefaultDiskCheck
	}
	if cfg.freeSpace == nil {
		cfg.freeSpace = freeBytes
	}
	return cfg
}

// Open opens (creating if needed) the Badger database in dir and starts its
// value-log GC loop and its free-space check. If another process holds the
// directory, the error matches ErrLocked and names dir. If the file system
// lacks the room that opening read-write writes, the database is opened
// read-only when Badger can (see ReadOnly and Reopen), and otherwise Open
// fails with an error matching ErrDiskFull (see space.go).
func Open(dir string, cfg Config) (*DB, error) {
	if dir == "" {
		return nil, errors.New("kv: open: empty directory name")
	}
	cfg = withDefaults(cfg)
	reserve := cfg.DiskReserve
	if reserve == 0 {
		reserve = DefaultDiskReserve(cfg)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: open: %w", err)
	}
	flushNeed := int64(cfg.NumMemtables)*cfg.MemTableSize + 1<<20
	g := &guard{
		dir: dir, reserve: reserve, floor: flushNeed, log: cfg.Logger, free: cfg.freeSpace, alloc: allocate,
		allocated: map[string]int64{}, reopen: make(chan struct{}),
	}
	free, err := g.free(dir)
	if err != nil {
		return nil, fmt.Errorf("kv: open: measuring free space: %w", err)
	}
	if g.readOnly, g.openNeed, err = openPlan(dir, free); err != nil {
		return nil, err
	}
	if g.readOnly {
		cfg.Logger.Error("kv: disk nearly full; opening the database read-only", "dir", dir,
			"free_mib", free>>20, "need_mib", (g.openNeed+1<<20-1)>>20)
	}
	bdb, err := badger.Open(Options(dir, cfg).WithReadOnly(g.readOnly))
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("kv: open %q: %w (is another jitd running?): %w", dir, ErrLocked, err)
		}
		if g.readOnly {
			return nil, fmt.Errorf("kv: open %q read-only (the disk is nearly full): %w", dir, err)
		}
		return nil, fmt.Errorf("kv: open %q: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	db := &DB{
		DB:        bdb,
		guard:     g,
		flushNeed: flushNeed,
		dir:       dir,
		absDir:    abs,
		ratio:     cfg.GCDiscardRatio,
		log:       cfg.Logger,
		stop:      make(chan struct{}),
	}
	_ = g.check(true) // allocate the new files; the state is logged
	switch {
	case cfg.gcTick != nil:
		db.wg.Go(func() { db.gcLoop(cfg.gcTick, cfg.gcDone) })
	case cfg.GCInterval > 0 && !g.readOnly:
		t := time.NewTicker(cfg.GCInterval)
		db.wg.Go(func() {
			defer t.Stop()
			db.gcLoop(t.C, cfg.gcDone)
		})
	}
	if cfg.diskTick != nil {
		db.wg.Go(func() { db.spaceLoop(cfg.diskTick, cfg.diskDone) })
	} else {
		t := time.NewTicker(cfg.DiskCheckInterval)
		db.wg.Go(func() {
			defer t.Stop()
			db.spaceLoop(t.C, nil)
		})
	}
	if cfg.TrimInterval > 0 {
		t := time.NewTicker(cfg.TrimInterval)
		db.wg.Go(func() {
			defer t.Stop()
			db.trimLoop(t.C)
		})
	}
	return db, nil
}

// spaceLoop runs the free-space check on every tick until Close.
func (db *DB) spaceLoop(tick <-chan time.Time, done chan<- error) {
	for {
		select {
		case <-db.stop:
			return
		case <-tick:
			err := db.guard.check(true)
			if done != nil {
				select {
				case done <- err:
				case <-db.stop:
					return
				}
			}
		}
	}
}

// trimLoop runs Trim on every tick until Close.
func (db *DB) trimLoop(tick <-chan time.Time) {
	for {
		select {
		case <-db.stop:
			return
		case <-tick:
			if _, err := db.Trim(); err != nil {
				db.log.Warn("kv: trim failed", "dir", db.dir, "err", err)
			}
		}
	}
}

// isLockError recognizes Badger's directory-lock failure. Badger formats the
// underlying errno into its message instead of wrapping it, so the message is
// all there is to go on.
func isLockError(err error) bool {
	return strings.Contains(err.Error(), "Another process is using this Badger database")
}

func (db *DB) gcLoop(tick <-chan time.Time, done chan<- error) {
	for {
		select {
		case <-db.stop:
			return
		case <-tick:
			err := db.RunGC()
			if errors.Is(err, ErrDiskFull) {
				err = nil // skipped; the space check logs the state
			} else if err != nil {
				db.log.Warn("kv: value-log GC failed", "dir", db.dir, "err", err)
			}
			if done != nil {
				select {
				case done <- err:
				case <-db.stop:
					return
				}
			}
		}
	}
}

// RunGC runs value-log garbage collection until a pass rewrites nothing. It
// is what the background loop calls; it returns nil when there was nothing
// (more) to collect.
//
// It does nothing, and returns a *DiskFullError, while writes are refused
// for lack of space (GC rewrites live values before it frees anything) or
// the database is read-only.
func (db *DB) RunGC() error {
	if err := db.Writable(); err != nil {
		return fmt.Errorf("kv: value-log GC: %w", err)
	}
	for {
		err := db.RunValueLogGC(db.ratio)
		switch {
		case err == nil:
			continue // A file was rewritten; there may be more.
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil
		default:
			return fmt.Errorf("kv: value-log GC in %q: %w", db.dir, err)
		}
	}
}

// Dir returns the directory the database was opened in.
func (db *DB) Dir() string { return db.dir }

// Close stops the GC loop and the space check and closes the database. It
// is safe to call more than once; later calls return the first call's
// result.
//
// Closing a read-write database flushes its memtables to new tables. When
// the file system lacks the space for that, Close leaves the database open
// and returns an error matching ErrDiskFull: a process about to exit loses
// nothing (every committed transaction is in the write-ahead log, replayed
// at the next Open), whereas a flush into a full file system is a SIGBUS.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.stop)
		db.wg.Wait()
		if !db.guard.readOnly {
			if free, err := db.guard.free(db.dir); err == nil && free < db.flushNeed {
				e := &DiskFullError{Dir: db.dir, Free: free, Reserve: db.flushNeed}
				db.closeErr = fmt.Errorf("kv: close %q: not flushing the memtables, the write-ahead log keeps them for the next start: %w", db.dir, e)
				db.log.Error("kv: database left open: no room to flush its memtables", "dir", db.dir, "err", db.closeErr)
				return
			}
		}
		if err := db.DB.Close(); err != nil {
			db.closeErr = fmt.Errorf("kv: close %q: %w", db.dir, err)
		}
	})
	return db.closeErr
}

// slogLogger adapts slog to badger.Logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (s slogLogger) Errorf(f string, a ...any)   { s.log(slog.LevelError, f, a) }
func (s slogLogger) Warningf(f string, a ...any) { s.log(slog.LevelWarn, f, a) }

// Infof logs at debug: Badger's info lines (tables opened, compactions) are
// noise for an operator.
func (s slogLogger) Infof(f string, a ...any)  { s.log(slog.LevelDebug, f, a) }
func (s slogLogger) Debugf(f string, a ...any) { s.log(slog.LevelDebug, f, a) }
