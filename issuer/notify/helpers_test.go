package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	now    = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	secret = "s3cret-0123456789abcdef"
	actor  = "spiffe://example.org/jitd"
)

// delivery is one request a receiver got.
type delivery struct {
	kind, id string
	event    Event
	sigErr   error
}

// receiver is a webhook endpoint on loopback that answers with a script of
// statuses (the last one repeating) and records what it got.
type receiver struct {
	*httptest.Server
	mu         sync.Mutex
	statuses   []int
	retryAfter string        // sent with 429 and 503
	hang       chan struct{} // if set, requests wait until it is closed
	got        []delivery
	delivered  chan struct{} // gets a value per request answered (buffered)
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	rc := &receiver{statuses: statuses, delivered: make(chan struct{}, 100_000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

// newHangingReceiver's requests wait until the test ends (or the client
// gives up).
func newHangingReceiver(t *testing.T) *receiver {
	rc := &receiver{statuses: []int{200}, hang: make(chan struct{}), delivered: make(chan struct{}, 100_000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	t.Cleanup(rc.release) // runs first: Close waits for the handlers
	return rc
}

func (rc *receiver) release() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	select {
	case <-rc.hang:
	default:
		close(rc.hang)
	}
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	if rc.hang != nil {
		select {
		case <-rc.hang:
		case <-r.Context().Done():
			return
		}
	}
	var body bytes.Buffer
	body.ReadFrom(r.Body)
	d := delivery{kind: r.Header.Get(HeaderEvent), id: r.Header.Get(HeaderDelivery)}
	d.sigErr = Verify([]byte(secret), body.Bytes(), r.Header.Get(HeaderSignature), now, time.Minute)
	if err := json.Unmarshal(body.Bytes(), &d.event); err != nil {
		d.sigErr = err
	}
	if r.Header.Get("Content-Type") != "application/json" {
		d.sigErr = http.ErrNotSupported
	}
	rc.mu.Lock()
	rc.got = append(rc.got, d)
	status := rc.statuses[min(len(rc.got), len(rc.statuses))-1]
	rc.mu.Unlock()
	if status == http.StatusFound {
		w.Header().Set("Location", "/elsewhere")
	}
	if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && rc.retryAfter != "" {
		w.Header().Set("Retry-After", rc.retryAfter)
	}
	w.WriteHeader(status)
	rc.delivered <- struct{}{}
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// sleeper records the waits asked for and returns at once.
type sleeper struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ds...)
}

// auditLog records the audit records.
type auditLog struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *auditLog) audit(_ context.Context, rec audit.Record) error {
	a.mu.Lock()
	a.recs = append(a.recs, rec)
	a.mu.Unlock()
	return nil
}

func (a *auditLog) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

// harness is a Notifier with recording fakes around it.
type harness struct {
	*Notifier
	sleeper *sleeper
	audits  *auditLog
	logs    *syncbuf.Buffer
}

// newHarness starts a Notifier for cfg, with one endpoint per URL unless
// cfg has endpoints, each signing with secret; the test closes it.
func newHarness(t *testing.T, cfg Config, urls ...string) *harness {
	t.Helper()
	key := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(key, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range urls {
		cfg.Endpoints = append(cfg.Endpoints, Endpoint{URL: u})
	}
	for i := range cfg.Endpoints {
		cfg.Endpoints[i].SecretFile = key
	}
	h := &harness{sleeper: &sleeper{}, audits: &auditLog{}, logs: &syncbuf.Buffer{}}
	cfg.Clock = func() time.Time { return now }
	cfg.Sleep = h.sleeper.sleep
	cfg.Audit, cfg.Actor = h.audits.audit, actor
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Notifier = n
	t.Cleanup(func() { // before the receivers are released: abandon the rest
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n.Close(ctx)
	})
	return h
}

// counts returns endpoint i's delivery counters by result.
func (n *Notifier) counts(i int) map[string]int {
	out := map[string]int{}
	for r, c := range n.workers[i].counts {
		if v := int(testutil.ToFloat64(c)); v != 0 {
			out[r] = v
		}
	}
	return out
}

// event returns a test event for request "r<i>".
func event(kind Kind, i int) Event {
	return Event{Kind: kind, RequestID: "r" + strconv.Itoa(i), Requester: "spiffe://example.org/person/alice", State: "ISSUED", Scopes: []string{"/bank.v1.Ledger/Refund"}}
}
