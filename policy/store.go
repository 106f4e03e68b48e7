package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
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

// DefaultSettle is how long, by default, a changed policy file must stay
// unchanged before [Watcher.Poll] applies it.
const DefaultSettle = 5 * time.Second

// ErrRemoval is wrapped by the [*RemovalError] of a reload refused because
// it would remove or change settings of the policy in force.
var ErrRemoval = errors.New("policy: reload removes settings in force")

// RemovalError refuses a reload that would remove or change settings of the
// policy in force (rules, approvals, permissions, members, limits) from a
// file without a matching checksum line: such a file may be one caught
// half-written. It wraps [ErrRemoval].
type RemovalError struct {
	// File is the policy file.
	File string
	// Removed are the settings of the policy in force that the file lacks
	// or changes, each "path = value" (e.g. `rules[1].approvals[1].count = "1"`).
	Removed []string
}

// Error says how many settings would go, in which sections, names the
// first, and says what to do.
func (e *RemovalError) Error() string {
	var sections []string
	count := make(map[string]int)
	for _, s := range e.Removed {
		sec := s[:strings.IndexAny(s+" ", ".[ ")]
		if count[sec] == 0 {
			sections = append(sections, sec)
		}
		count[sec]++
	}
	var b strings.Builder
	for i, sec := range sections {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", sec, count[sec])
	}
	first := ""
	if len(e.Removed) > 0 {
		first = "; first: " + e.Removed[0]
	}
	return fmt.Sprintf("policy: %s: reload refused: it removes or changes %d settings of the policy in force (%s%s); "+
		"a file may do that only with a matching checksum line first (%s<sha256 of the rest>), so that a file caught half-written is never applied",
		e.File, len(e.Removed), b.String(), first, ChecksumPrefix)
}

// Unwrap returns [ErrRemoval].
func (e *RemovalError) Unwrap() error { return ErrRemoval }

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
	// Removed are the settings of the previous policy that the file
	// removes or changes: applied when OK (the file's checksum matched),
	// the reason for refusing it otherwise (Err is a *RemovalError).
	Removed []string
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
	// Settle is how long a changed file must stay unchanged, as Poll sees
	// it on the Now clock, before Poll applies it; default [DefaultSettle].
	// A file whose checksum line matches is applied at once.
	Settle time.Duration
	// Now is the clock for event times and the settle interval; default
	// time.Now.
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
// makes it wait for the file to settle, then parse it.
//
// A file written in place is read half-written now and then, and a prefix
// of a policy file is often a valid policy that decides otherwise (the
// first line alone, "version: 1", denies everything and gives no
// permissions). So a change is applied only once it is whole:
//
//   - the same content must be seen for [WatcherConfig.Settle] on the
//     watcher's clock (a file whose checksum line matches, see
//     [ChecksumPrefix], is whole by construction and skips the wait);
//   - a file that would remove or change any setting of the policy in
//     force (see [RemovalError]) is refused unless its checksum line
//     matches, and when it does match the removals are logged as a warning.
//
// Writers should still replace the file atomically (write a temporary file
// in the same directory, then rename it over the policy).
//
// A file that parses and passes those checks replaces the policy in the
// Store; any other leaves the old policy in force. Either way it logs,
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
	// pendingHash is the changed content waiting to settle, first seen at
	// pendingSince; "" when none.
	pendingHash  string
	pendingSince time.Time
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
	if cfg.Settle < 0 {
		return nil, fmt.Errorf("policy: watcher: settle interval %v is negative", cfg.Settle)
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
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

// Poll checks the file once and reloads it if it changed and has settled
// (see [Watcher]). It returns the event and true if there was one.
func (w *Watcher) Poll() (LoadEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.cfg.Path)
	if err != nil {
		w.pendingHash = ""
		return w.readFailed(fmt.Errorf("policy: %w", err))
	}
	if w.statOK && w.pendingHash == "" && fi.ModTime().Equal(w.modTime) && fi.Size() == w.size {
		return LoadEvent{}, false
	}
	data, err := readFile(w.cfg.Path)
	if err != nil {
		w.pendingHash = ""
		return w.readFailed(err)
	}
	w.statOK, w.modTime, w.size, w.lastErr = true, fi.ModTime(), fi.Size(), ""
	h := hashOf(data)
	if h == w.lastHash {
		w.pendingHash = ""
		return LoadEvent{}, false // touched, rewritten with the same bytes, or back as it was
	}
	if !checksumValid(data) {
		now := w.cfg.Now()
		if h != w.pendingHash {
			w.pendingHash, w.pendingSince = h, now
			w.cfg.Logger.Debug("policy file changed; waiting for it to settle", "path", w.cfg.Path, "hash", h, "settle", w.cfg.Settle)
			return LoadEvent{}, false
		}
		if now.Sub(w.pendingSince) < w.cfg.Settle {
			return LoadEvent{}, false
		}
	}
	w.pendingHash = ""
	return w.load(data), true
}

// ReloadNow reads and parses the file whatever its state, as on SIGHUP, and
// returns the event. It does not wait for the file to settle (a SIGHUP says
// the file is ready), but a file that would remove or change settings of
// the policy in force is refused without a matching checksum line, as in
// Poll.
func (w *Watcher) ReloadNow() LoadEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pendingHash = ""
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

// load parses data and, unless it would remove settings of the policy in
// force without a matching checksum, puts it in force.
func (w *Watcher) load(data []byte) LoadEvent {
	h := hashOf(data)
	w.lastHash = h
	p, err := parse(w.cfg.Path, data, w.cfg.Options)
	var removed []string
	if err == nil {
		if cur := w.cfg.Store.Current(); cur != nil {
			removed = removedSettings(cur.settings, p.settings)
		}
		if len(removed) > 0 && !p.checksummed {
			p, err = nil, &RemovalError{File: w.cfg.Path, Removed: removed}
		}
	}
	return w.report(LoadEvent{Hash: h, OK: err == nil, Err: err, Removed: removed}, p)
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
		if len(ev.Removed) > 0 {
			w.cfg.Logger.Warn("policy reload removed or changed settings of the previous policy (its checksum line matches)",
				"path", ev.Path, "hash", ev.Hash, "count", len(ev.Removed))
			w.logRemoved(slog.LevelWarn, ev)
		}
	} else {
		w.cfg.Logger.Error("policy load failed; keeping the previous policy", "path", ev.Path, "hash", ev.Hash, "active", ev.Active, "err", ev.Err)
		w.logRemoved(slog.LevelError, ev)
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

// logRemoved logs the settings ev removes, one line each, at most 50.
func (w *Watcher) logRemoved(level slog.Level, ev LoadEvent) {
	for i, s := range ev.Removed {
		if i == 50 {
			w.cfg.Logger.Log(context.Background(), level, "policy setting removed or changed: more not shown", "path", ev.Path, "more", len(ev.Removed)-i)
			return
		}
		w.cfg.Logger.Log(context.Background(), level, "policy setting removed or changed", "path", ev.Path, "setting", s)
	}
}
