package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Store holds the policy in force. Readers call Current for every decision;
// a reload swaps the whole policy atomically, so a decision never sees half
// of two files.
type Store struct {
	p atomic.Pointer[Policy]
}

// NewStore returns a Store holding p, which may be nil (no policy yet: every
// decision denies).
func NewStore(p *Policy) *Store {
	s := &Store{}
	if p != nil {
		s.p.Store(p)
	}
	return s
}

// Current returns the policy in force, or nil if none has loaded. All its
// methods are nil-safe and deny.
func (s *Store) Current() *Policy { return s.p.Load() }

// Swap puts p in force and returns the policy it replaces. A nil p is
// ignored: a store never goes back to no policy.
func (s *Store) Swap(p *Policy) *Policy {
	if p == nil {
		return s.Current()
	}
	return s.p.Swap(p)
}

// LoadEvent reports one attempt to load the policy file. The issuer writes
// an audit entry for each.
type LoadEvent struct {
	// Path is the file.
	Path string
	// Hash is the SHA-256 (hex) of the bytes read, "" if none could be.
	Hash string
	// OK means the file parsed and is now in force.
	OK bool
	// Err says why the load failed (a *FileError for a bad file).
	Err error
	// Time is when the load happened, from the watcher's clock.
	Time time.Time
	// Active is the hash of the policy in force after the event: Hash when
	// OK, the previous policy's (or "" for none) when not.
	Active string
}

// WatcherConfig configures a [Watcher].
type WatcherConfig struct {
	// Path is the policy file. Required.
	Path string
	// Options are passed to every parse.
	Options Options
	// Store receives each policy that loads. Required.
	Store *Store
	// Interval is how often Run polls the file; default 5s. Ignored when
	// Ticks is set.
	Interval time.Duration
	// Ticks, when set, drives Run's polls instead of a ticker (tests).
	Ticks <-chan time.Time
	// Now is the clock for event times; default time.Now.
	Now func() time.Time
	// Logger logs each load; default slog.Default().
	Logger *slog.Logger
	// Collector, when set, counts loads.
	Collector *Collector
	// OnLoad, when set, is called with every event, synchronously, before
	// Poll or ReloadNow return (the issuer writes the audit entry here). It
	// must not call Poll or ReloadNow.
	OnLoad func(LoadEvent)
}

// Watcher reloads the policy file when it changes. It polls: a changed
// modification time or size makes it read the file, and a changed SHA-256
// makes it parse it. A file that parses replaces the policy in the Store; a
// file that does not leaves the old policy in force. Either way it logs,
// counts and reports one LoadEvent per distinct file content (or read
// error), not one per poll.
type Watcher struct {
	cfg WatcherConfig

	mu       sync.Mutex
	statOK   bool
	modTime  time.Time
	size     int64
	lastHash string // content last parsed, good or bad
	lastErr  string // last read error reported
}

// NewWatcher returns a Watcher. It does not read the file: call ReloadNow
// for the initial load (and on SIGHUP), and Run to poll.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Path == "" {
		return nil, errors.New("policy: watcher: no path")
	}
	if cfg.Store == nil {
		return nil, errors.New("policy: watcher: no store")
	}
	if _, err := cfg.Options.maxTTLCap(); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, lastHash: cfg.Store.Current().Hash()}, nil
}

// Run polls the file until ctx ends, then returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	ticks := w.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(w.cfg.Interval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticks:
			w.Poll()
		}
	}
}

// Poll checks the file once and reloads it if it changed. It returns the
// event and true if there was one.
func (w *Watcher) Poll() (LoadEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.cfg.Path)
	if err != nil {
		return w.readFailed(fmt.Errorf("policy: %w", err))
	}
	if w.statOK && fi.ModTime().Equal(w.modTime) && fi.Size() == w.size {
		return LoadEvent{}, false
	}
	data, err := readFile(w.cfg.Path)
	if err != nil {
		return w.readFailed(err)
	}
	w.statOK, w.modTime, w.size, w.lastErr = true, fi.ModTime(), fi.Size(), ""
	if hashOf(data) == w.lastHash {
		return LoadEvent{}, false // touched, or rewritten with the same bytes
	}
	return w.load(data), true
}

// ReloadNow reads and parses the file whatever its state, as on SIGHUP, and
// returns the event.
func (w *Watcher) ReloadNow() LoadEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.cfg.Path)
	var data []byte
	if err != nil {
		err = fmt.Errorf("policy: %w", err)
	} else {
		data, err = readFile(w.cfg.Path)
	}
	if err != nil {
		w.lastErr = ""
		ev, _ := w.readFailed(err)
		return ev
	}
	w.statOK, w.modTime, w.size, w.lastErr = true, fi.ModTime(), fi.Size(), ""
	return w.load(data)
}

// readFailed reports a read error once until the error changes.
func (w *Watcher) readFailed(err error) (LoadEvent, bool) {
	w.statOK = false
	w.lastHash = "" // the file must be parsed again when it is back
	if err.Error() == w.lastErr {
		return LoadEvent{}, false
	}
	w.lastErr = err.Error()
	return w.report(LoadEvent{Err: err}, nil), true
}

func (w *Watcher) load(data []byte) LoadEvent {
	h := hashOf(data)
	w.lastHash = h
	p, err := parse(w.cfg.Path, data, w.cfg.Options)
	return w.report(LoadEvent{Hash: h, OK: err == nil, Err: err}, p)
}

// report swaps p in when the event is OK, then logs, counts and calls
// OnLoad.
func (w *Watcher) report(ev LoadEvent, p *Policy) LoadEvent {
	ev.Path, ev.Time = w.cfg.Path, w.cfg.Now()
	if ev.OK {
		w.cfg.Store.Swap(p)
	}
	cur := w.cfg.Store.Current()
	ev.Active = cur.Hash()
	if ev.OK {
		w.cfg.Logger.Info("policy loaded", "path", ev.Path, "hash", ev.Hash, "rules", len(p.rules), "warnings", len(p.warnings))
		for _, warn := range p.warnings {
			w.cfg.Logger.Warn("policy warning", "path", ev.Path, "warning", warn)
		}
	} else {
		w.cfg.Logger.Error("policy load failed; keeping the previous policy", "path", ev.Path, "hash", ev.Hash, "active", ev.Active, "err", ev.Err)
	}
	rules := 0
	if cur != nil {
		rules = len(cur.rules)
	}
	w.cfg.Collector.observe(ev, rules)
	if w.cfg.OnLoad != nil {
		w.cfg.OnLoad(ev)
	}
	return ev
}
