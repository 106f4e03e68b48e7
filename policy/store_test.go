package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// watchEnv is a policy file in a temporary directory, a store and a
// watcher over it with a fake clock, recording events, logs and metrics.
type watchEnv struct {
	t       *testing.T
	path    string
	store   *Store
	w       *Watcher
	events  chan LoadEvent
	logs    *bytes.Buffer
	metrics *Collector
	mtime   time.Time
	clock   *fakeclock.Clock
}

func newWatchEnv(t *testing.T, ticks <-chan time.Time) *watchEnv {
	t.Helper()
	e := &watchEnv{
		t:       t,
		path:    filepath.Join(t.TempDir(), "policy.yaml"),
		store:   NewStore(nil),
		events:  make(chan LoadEvent, 16),
		logs:    &bytes.Buffer{},
		metrics: NewCollector(),
		mtime:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		clock:   fakeclock.New(time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC)),
	}
	w, err := NewWatcher(WatcherConfig{
		Path:      e.path,
		Store:     e.store,
		Ticks:     ticks,
		Now:       e.clock.Now,
		Logger:    slog.New(slog.NewTextHandler(e.logs, nil)),
		Collector: e.metrics,
		OnLoad:    func(ev LoadEvent) { e.events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	return e
}

// write replaces the file and moves its modification time forward, as an
// editor would (without depending on the file system's time granularity).
func (e *watchEnv) write(data string) string {
	e.t.Helper()
	if err := os.WriteFile(e.path, []byte(data), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.touch()
	return hashOf([]byte(data))
}

func (e *watchEnv) touch() {
	e.t.Helper()
	e.mtime = e.mtime.Add(time.Second)
	if err := os.Chtimes(e.path, e.mtime, e.mtime); err != nil {
		e.t.Fatal(err)
	}
}

// poll polls and returns the event, failing if there is none (or there is
// one when want is false). A change must settle: when the first poll has
// no event, the clock moves on by the settle interval and it polls again.
func (e *watchEnv) poll(want bool) LoadEvent {
	e.t.Helper()
	ev, ok := e.w.Poll()
	if !ok {
		e.clock.Add(DefaultSettle)
		ev, ok = e.w.Poll()
	}
	if ok != want {
		e.t.Fatalf("Poll reported an event: %v, want %v (%+v)", ok, want, ev)
	}
	if ok {
		if got := <-e.events; got.Hash != ev.Hash || got.OK != ev.OK {
			e.t.Fatalf("OnLoad got %+v, Poll returned %+v", got, ev)
		}
	}
	return ev
}

func (e *watchEnv) loads(result string) float64 {
	return testutil.ToFloat64(e.metrics.loads.WithLabelValues(result))
}

func TestWatcher(t *testing.T) {
	e := newWatchEnv(t, nil)
	good := e.write(edit(nil))

	ev := e.w.ReloadNow()
	<-e.events
	if !ev.OK || ev.Err != nil || ev.Hash != good || ev.Active != good || ev.Path != e.path || ev.Time.IsZero() {
		t.Fatalf("initial load: %+v", ev)
	}
	first := e.store.Current()
	if first.Hash() != good {
		t.Fatalf("store holds %q", first.Hash())
	}
	e.poll(false) // unchanged
	e.touch()
	e.poll(false) // touched, same bytes

	// A valid change is swapped in.
	next := e.write(edit(map[int]string{10: "    description: changed"}))
	if ev := e.poll(true); !ev.OK || ev.Hash != next || ev.Active != next {
		t.Fatalf("change: %+v", ev)
	}
	good, first = next, e.store.Current()

	// A broken file keeps the old policy, says why, and is reported once.
	bad := e.write(edit(map[int]string{9: "    approvals: [{count: 0, from: [sre]}]"}))
	ev = e.poll(true)
	var fe *FileError
	if ev.OK || ev.Hash != bad || ev.Active != good || !errors.As(ev.Err, &fe) || fe.Problems[0].Line != 9 {
		t.Fatalf("broken file: %+v", ev)
	}
	if !strings.Contains(ev.Err.Error(), e.path+": line 9: rules[0].approvals[0].count: must be at least 1") {
		t.Errorf("error = %v", ev.Err)
	}
	if e.store.Current() != first {
		t.Fatal("a broken file replaced the policy")
	}
	e.touch()
	e.poll(false)
	if !strings.Contains(e.logs.String(), "policy load failed; keeping the previous policy") || !strings.Contains(e.logs.String(), "hash="+bad) {
		t.Errorf("logs:\n%s", e.logs)
	}

	// A missing file is reported once, and its return is a load.
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	if ev := e.poll(true); ev.OK || !errors.Is(ev.Err, os.ErrNotExist) || ev.Hash != "" || ev.Active != good {
		t.Fatalf("missing file: %+v", ev)
	}
	e.poll(false)
	e.write(edit(map[int]string{10: "    description: changed"}))
	if ev := e.poll(true); !ev.OK || ev.Hash != good {
		t.Fatalf("file back: %+v", ev)
	}

	// ReloadNow always loads and reports.
	if ev := e.w.ReloadNow(); !ev.OK || ev.Hash != good {
		t.Fatalf("ReloadNow: %+v", ev)
	}
	<-e.events

	if ok, failed := e.loads("ok"), e.loads("failed"); ok != 4 || failed != 2 {
		t.Errorf("loads ok=%v failed=%v, want 4 and 2", ok, failed)
	}
	if v := testutil.ToFloat64(e.metrics.lastOK); v != 1 {
		t.Errorf("last_load_ok = %v", v)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e.metrics); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 5 {
		t.Errorf("gathered %d series, %v", n, err)
	}
}

func TestWatcherRun(t *testing.T) {
	ticks := make(chan time.Time)
	e := newWatchEnv(t, ticks)
	e.write(edit(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.w.Run(ctx) }()

	// The first poll sees the change, the second (at the same time) waits
	// for it to settle, the third (a settle interval later) loads it.
	settle := func() {
		ticks <- time.Time{}
		ticks <- time.Time{}
		e.clock.Add(DefaultSettle)
		ticks <- time.Time{}
	}
	settle()
	if ev := <-e.events; !ev.OK {
		t.Fatalf("first tick: %+v", ev)
	}
	bad := e.write("version: 1\nrulez: []\n")
	settle()
	if ev := <-e.events; ev.OK || ev.Hash != bad || !strings.Contains(ev.Err.Error(), "line 2: rulez: unknown key") {
		t.Fatalf("second tick: %+v", ev)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}

func TestWatcherConfig(t *testing.T) {
	s := NewStore(nil)
	for _, cfg := range []WatcherConfig{
		{Store: s},
		{Path: "x"},
		{Path: "x", Store: s, Options: Options{MaxTTLCap: 48 * time.Hour}},
		{Path: "x", Store: s, Settle: -time.Second},
	} {
		if _, err := NewWatcher(cfg); err == nil {
			t.Errorf("NewWatcher(%+v) accepted", cfg)
		}
	}
	if _, err := NewWatcher(WatcherConfig{Path: "x", Store: s}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestStore(t *testing.T) {
	s := NewStore(nil)
	if s.Current() != nil {
		t.Fatal("new store holds a policy")
	}
	if d := s.Current().Decide(refund(nil)); d.Outcome != Denied {
		t.Fatal("no policy did not deny")
	}
	a, b := mustParse(t, edit(nil)), mustParse(t, decidePolicy)
	if old := s.Swap(a); old != nil {
		t.Fatal("Swap returned a policy from an empty store")
	}
	if s.Swap(nil) != a || s.Current() != a {
		t.Fatal("Swap(nil) changed the store")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if p := s.Current(); p != a && p != b {
					t.Error("torn policy")
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			s.Swap(b)
		} else {
			s.Swap(a)
		}
	}
	wg.Wait()
	w, err := NewWatcher(WatcherConfig{Path: filepath.Join(t.TempDir(), "none.yaml"), Store: s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if ev := w.ReloadNow(); ev.OK || !errors.Is(ev.Err, os.ErrNotExist) || s.Current() == nil {
		t.Errorf("ReloadNow of a missing file: %+v", ev)
	}
	if NewStore(b).Current() != b {
		t.Error("NewStore(p) does not hold p")
	}
}
