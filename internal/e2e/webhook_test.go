package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/notify"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
)

// hook is a webhook receiver that fails the first failFirst attempts of
// every delivery with 503, checks signatures and records what it accepted.
type hook struct {
	t         *testing.T
	secret    []byte
	now       func() time.Time
	failFirst int

	mu       sync.Mutex
	attempts map[string]int // delivery ID -> attempts seen
	events   []notify.Event
	badSigs  int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := notify.Verify(h.secret, body, r.Header.Get(notify.HeaderSignature), h.now(), 0); err != nil {
		h.badSigs++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(notify.HeaderDelivery)
	h.attempts[id]++
	if h.attempts[id] <= h.failFirst {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	var ev notify.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != id || string(ev.Kind) != r.Header.Get(notify.HeaderEvent) {
		h.t.Errorf("webhook body %s does not match its headers (%v)", body, err)
	}
	h.events = append(h.events, ev)
}

// kinds returns the kinds accepted for request id, in order.
func (h *hook) kinds(id string) []notify.Kind {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []notify.Kind
	for _, ev := range h.events {
		if ev.RequestID == id {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// TestWebhooks runs jitd with three webhooks: one that fails twice per
// delivery before accepting it, one whose port is closed, and one that
// hangs. The refund goes from created to revoked regardless; the first
// receives every event once, signed; the dead one's give-ups are audited
// and counted.
func TestWebhooks(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	var e *env
	flaky := &hook{t: t, secret: secret, failFirst: 2, attempts: map[string]int{}, now: func() time.Time { return e.clock.Now() }}
	flakySrv := httptest.NewServer(flaky)
	defer flakySrv.Close()
	hanging := make(chan struct{})
	hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hanging:
		case <-r.Context().Done():
		}
	}))
	defer hangSrv.Close()
	defer close(hanging) // before hangSrv.Close, which waits for handlers
	dead := closedPort(t)

	e = newEnv(t, func(c *jitd.ServeConfig) {
		c.MetricsListen = "127.0.0.1:0"
		c.WebhookBackoff = time.Millisecond
		c.Webhooks = []notify.Endpoint{
			{Name: "flaky", URL: flakySrv.URL, SecretFile: secretFile},
			{Name: "dead", URL: "http://" + dead + "/hook", SecretFile: secretFile, Events: []string{"created"}},
			{Name: "hanging", URL: hangSrv.URL, SecretFile: secretFile, Timeout: time.Hour},
		}
	})

	// The whole flow completes while the hanging endpoint still holds its
	// first delivery: no webhook stands in an approval's way.
	id, _ := e.refund("INC-7: webhooks")
	e.ok(alice, "approve", id)
	e.ok(bob, "approve", id)
	e.wantState(dev, id, pb.State_STATE_ISSUED)
	e.ok(bob, "revoke", id, "--reason", "done", "--ack-timeout", "0")

	want := []notify.Kind{notify.KindCreated, notify.KindDecided, notify.KindIssued, notify.KindRevoked}
	eventually(t, 20*time.Second, "the flaky webhook to accept every event", func() bool {
		return slices.Equal(flaky.kinds(id), want)
	})
	flaky.mu.Lock()
	for delivery, n := range flaky.attempts {
		if n != 3 {
			t.Errorf("delivery %s: %d attempts, want 3 (two 503s, then accepted)", delivery, n)
		}
	}
	if flaky.badSigs != 0 {
		t.Errorf("%d deliveries with a bad signature", flaky.badSigs)
	}
	for _, ev := range flaky.events {
		if ev.Text == "" || ev.Requester != personID(dev) {
			t.Errorf("event %+v: no text or wrong requester", ev)
		}
	}
	flaky.mu.Unlock()

	// The dead endpoint gives up after its attempts: audited and counted.
	metrics := "http://" + e.srv.MetricsAddr() + "/metrics"
	eventually(t, 20*time.Second, "the dead webhook to be given up on", func() bool {
		v, _ := metric(scrape(t, metrics), "jitgrant_webhook_deliveries_total", `endpoint="dead",result="failed"`)
		return v >= 1
	})
	body := scrape(t, metrics)
	if v, _ := metric(body, "jitgrant_webhook_deliveries_total", `endpoint="flaky",result="retry"`); v != 8 {
		t.Errorf("flaky endpoint retries = %v, want 8 (two per event)", v)
	}
	if v, _ := metric(body, "jitgrant_webhook_deliveries_total", `endpoint="flaky",result="ok"`); v != 4 {
		t.Errorf("flaky endpoint deliveries = %v, want 4", v)
	}
	var failed []audit.Entry
	for _, en := range e.exportAudit().Entries {
		if en.Action == audit.ActionWebhookFailed {
			failed = append(failed, en)
		}
	}
	if len(failed) != 1 || failed[0].Subject != id || failed[0].Details["endpoint"] != "dead" {
		t.Errorf("audited webhook failures %+v, want one for %s on endpoint dead", failed, id)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
