package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Config configures a Log.
type Config struct {
	// Signer signs checkpoints with the audit key (see GenerateKey and
	// ReadSigner). Required.
	Signer note.Signer
	// Origin is the first line of every checkpoint, naming the log, for
	// example "jitgrant audit example.org". Required.
	Origin string
	// Actor is the SPIFFE ID recorded on the entries the log writes itself
	// (checkpoints), normally the daemon's own ID. Required.
	Actor string
	// Prefix is the key prefix under which the log keeps its data in the
	// shared database. Default "a/".
	Prefix string
	// CheckpointEvery makes the log sign a checkpoint, and record it as an
	// ActionCheckpoint entry, after this many entries. Default 1000;
	// negative disables.
	CheckpointEvery int
	// CheckpointInterval makes the log sign a checkpoint when entries were
	// added and this much time has passed since the last one. Default one
	// minute; negative disables.
	CheckpointInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the log's warnings. Default slog.Default().
	Logger *slog.Logger
	// MaxGroup bounds how many appends share one commit. Default 1024.
	MaxGroup int
	// CommitDelay, when positive, makes the writer wait this long after the
	// first append of a group before it commits, provided the previous
	// group held more than one append (appends are arriving concurrently;
	// a lone appender never waits). More appends then share each synced
	// commit, and every commit costs CPU (Badger's write path, the sync):
	// a daemon whose appenders are busy on the CPU themselves gets more
	// done. Appenders that mostly wait on the log (CPU idle) lose
	// throughput instead. Default 0: commit at once.
	CommitDelay time.Duration
	// WriteCheck, when set, runs before every write transaction (a group
	// of appends, a checkpoint). A non-nil error refuses the writes (fail
	// closed: no change commits without its entry) with a *RefusedError
	// that wraps it; the log stays usable and later appends are tried
	// again. jitd checks the disk's free space with it.
	WriteCheck func() error
}

// Errors callers can branch on.
var (
	// ErrClosed reports use of a closed Log.
	ErrClosed = errors.New("audit: log is closed")
	// ErrFailed reports that an earlier write to the log failed in a way
	// that leaves its on-disk state uncertain; the log refuses appends until
	// it is reopened.
	ErrFailed = errors.New("audit: log failed")
	// ErrInvalid reports a record that breaks the format rules.
	ErrInvalid = errInvalid
	// ErrTooLarge reports an append whose change and entry do not fit in one
	// Badger transaction.
	ErrTooLarge = errors.New("audit: change and entry too large for one transaction")
	// ErrNotFound reports an entry or checkpoint that does not exist.
	ErrNotFound = errors.New("audit: not found")
	// ErrRefused reports writes refused by Config.WriteCheck; the log stays
	// usable. *RefusedError matches it.
	ErrRefused = errors.New("audit: write refused")
)

// RefusedError is the error of an append or checkpoint refused by
// Config.WriteCheck before anything was written. Its text is the check's.
type RefusedError struct {
	// Err is what Config.WriteCheck returned.
	Err error
}

func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the check's error.
func (e *RefusedError) Unwrap() error { return e.Err }

// Is makes a *RefusedError match ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Log is an append-only, hash-chained audit log with a Merkle tree and signed
// checkpoints, stored in a Badger database it shares with its caller. All
// methods are safe for concurrent use. Open at most one Log per prefix and
// database.
type Log struct {
	db  *badger.DB
	cfg Config
	ks  keyspace

	queue chan *pending
	ctl   chan func() // work run on the writer goroutine
	quit  chan struct{}
	done  chan struct{}
	tick  <-chan time.Time

	mu        sync.RWMutex // guards closed and inflight.Add
	closed    bool
	inflight  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	size   atomic.Uint64 // committed entries
	latest atomic.Pointer[Checkpoint]
	failed atomic.Pointer[error]

	w     writerState // owned by the writer goroutine
	m     metrics
	cache hashCache

	hookBeforeCommit atomic.Pointer[func() error] // tests: fail commits
	hookGather       atomic.Pointer[func()]       // tests: see the writer wait (CommitDelay)
}

// New opens the log kept under cfg.Prefix in db, checks that its stored head,
// tree and latest checkpoint agree, and starts its writer. The caller keeps
// ownership of db and must Close the log before closing db.
func New(db *badger.DB, cfg Config) (*Log, error) {
	return newLog(db, cfg, nil)
}

func newLog(db *badger.DB, cfg Config, tick <-chan time.Time) (*Log, error) {
	if db == nil {
		return nil, errors.New("audit: new: nil database")
	}
	if cfg.Signer == nil {
		return nil, errors.New("audit: new: Config.Signer is required")
	}
	if !validOrigin(cfg.Origin) {
		return nil, fmt.Errorf("audit: new: Config.Origin %q must be 1 to 256 printable bytes", cfg.Origin)
	}
	if err := checkActor(cfg.Actor); err != nil {
		return nil, fmt.Errorf("audit: new: Config.Actor: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "a/"
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxGroup <= 0 {
		cfg.MaxGroup = 1024
	}
	l := &Log{
		db:    db,
		cfg:   cfg,
		ks:    keyspace{prefix: []byte(cfg.Prefix)},
		queue: make(chan *pending, cfg.MaxGroup),
		ctl:   make(chan func()),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		tick:  tick,
	}
	l.m.init()
	if err := l.load(); err != nil {
		return nil, err
	}
	var ticker *time.Ticker
	if l.tick == nil && cfg.CheckpointInterval > 0 {
		ticker = time.NewTicker(cfg.CheckpointInterval)
		l.tick = ticker.C
	}
	go func() {
		if ticker != nil {
			defer ticker.Stop()
		}
		l.run()
	}()
	return l, nil
}

// load reads the head of the log, rebuilds the tree's fringe and checks the
// latest checkpoint against it: O(log n) reads, whatever the log's size.
func (l *Log) load() error {
	return l.db.View(func(txn *badger.Txn) error {
		last, ok, err := lastEntry(txn, l.ks)
		if err != nil {
			return fmt.Errorf("audit: open: %w", err)
		}
		size := uint64(0)
		if ok {
			size = last.Seq + 1
			l.w.head, l.w.last = last.Hash, last.Time
		}
		reader := l.hashReader(txn)
		fr, err := loadFringe(size, reader)
		if err != nil {
			return fmt.Errorf("audit: open: %w", err)
		}
		if ok {
			// The last entry's tree hashes must be there (same commit).
			if _, err := reader.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(last.Seq))}); err != nil {
				return fmt.Errorf("audit: open: %w", err)
			}
		}
		l.w.fr = fr
		cp, err := lastCheckpoint(txn, l.ks)
		if err != nil {
			return fmt.Errorf("audit: open: %w", err)
		}
		l.w.cpTime = l.cfg.Now()
		if cp != nil {
			if cp.Size > size {
				return fmt.Errorf("%w: checkpoint of size %d but only %d entries", ErrCorrupt, cp.Size, size)
			}
			root, err := tlog.TreeHash(int64(cp.Size), reader)
			if err != nil {
				return fmt.Errorf("audit: open: %w", err)
			}
			if root != cp.Root {
				return fmt.Errorf("%w: stored tree of size %d does not match its checkpoint", ErrCorrupt, cp.Size)
			}
			if cp.Origin != l.cfg.Origin {
				return fmt.Errorf("audit: open: log has origin %q, configured %q", cp.Origin, l.cfg.Origin)
			}
			l.latest.Store(cp)
			l.w.cpTime = cp.Time
			l.w.sinceCP = int(size - cp.Size)
		} else {
			l.w.sinceCP = int(size)
		}
		l.size.Store(size)
		return nil
	})
}

func (l *Log) hashReader(txn *badger.Txn) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]Hash, error) { return readHashes(txn, l.ks, &l.cache, idx) })
}

// Append records r in the log and returns the committed entry.
//
// If change is not nil, it runs inside the commit that writes the entry, on a
// Tx: its writes commit together with the entry or not at all. If change
// returns an error, Append returns that error unchanged and neither the
// change nor the entry is written (other appends in the same group are not
// affected). If the log cannot write the entry, Append returns an error and
// the change is not written either (fail closed).
//
// change runs on the log's writer goroutine, so it must be quick, touch only
// tx (never the Log: that would deadlock), and may run more than once (when
// a commit is retried after a conflict or split because it grew too large).
//
// If ctx ends before the writer picks the append up, Append returns ctx's
// error and nothing is written. Once picked up, Append waits for the outcome:
// an error from Append always means nothing was written.
func (l *Log) Append(ctx context.Context, r Record, change func(Tx) error) (Entry, error) {
	es, err := l.appendOwn(ctx, []Record{r}, change)
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// AppendAll is Append for a change that several entries record, such as a
// request that is created and issued at once: recs (at least one) become
// consecutive entries, in order, each with its own sequence number, chain
// link and tree leaf, committed together with change or not at all. Tx.Seq
// gives change the sequence number of the first of them. Everything Append
// says about change, ctx and failures holds for the whole set.
func (l *Log) AppendAll(ctx context.Context, recs []Record, change func(Tx) error) ([]Entry, error) {
	return l.appendOwn(ctx, slices.Clone(recs), change)
}

// appendOwn is AppendAll on a slice of records that the log may keep.
func (l *Log) appendOwn(ctx context.Context, recs []Record, change func(Tx) error) ([]Entry, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("audit: append: %w: no record", ErrInvalid)
	}
	for i := range recs {
		r := &recs[i]
		if err := r.validate(true); err != nil {
			return nil, fmt.Errorf("audit: append: %w", err)
		}
		if r.Action == ActionCheckpoint {
			return nil, fmt.Errorf("audit: append: %w: %s entries are written by the log itself", ErrInvalid, r.Action)
		}
		r.Details = maps.Clone(r.Details)
	}
	p := &pending{ctx: ctx, recs: recs, change: change, res: make(chan result, 1), start: l.cfg.Now()}
	if err := l.enter(); err != nil {
		return nil, err
	}
	select {
	case l.queue <- p:
		l.inflight.Done()
	case <-ctx.Done():
		l.inflight.Done()
		return nil, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	select {
	case res := <-p.res:
		return res.entries, res.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return nil, fmt.Errorf("audit: append: %w", ctx.Err())
		}
		res := <-p.res // the writer has it: its outcome stands
		return res.entries, res.err
	}
}

// enter registers a request to the writer, unless the log is closed.
func (l *Log) enter() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.inflight.Add(1)
	return nil
}

// Sign makes sure a signed checkpoint covers every committed entry, signing
// and storing a new one if needed, and returns it.
func (l *Log) Sign(ctx context.Context) (*Checkpoint, error) {
	var (
		cp  *Checkpoint
		err error
	)
	if err := l.onWriter(ctx, func() { cp, err = l.signNow() }); err != nil {
		return nil, fmt.Errorf("audit: sign: %w", err)
	}
	return cp, err
}

// onWriter runs f on the writer goroutine, between two groups, and waits
// for it.
func (l *Log) onWriter(ctx context.Context, f func()) error {
	if err := l.enter(); err != nil {
		return err
	}
	done := make(chan struct{})
	select {
	case l.ctl <- func() { f(); close(done) }:
		l.inflight.Done()
	case <-ctx.Done():
		l.inflight.Done()
		return ctx.Err()
	}
	<-done
	return nil
}

// Close stops accepting appends, commits those already submitted, signs and
// stores a final checkpoint, and stops the writer. It does not close the
// database. Later calls return the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.inflight.Wait()
		close(l.quit)
		<-l.done
		l.closeErr = l.w.closeErr
	})
	return l.closeErr
}
