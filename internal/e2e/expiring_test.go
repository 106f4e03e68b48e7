package e2e

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/notify"
)

// TestExpiringNotice runs jitd with a 2-minute expiring lead time, a
// webhook receiver on loopback and jitctl watch: a 5-minute grant gets one
// signed expiring event two minutes before its end, watch prints it, and
// neither a restart nor the grant's expiry sends it again (its expired
// event comes next); the audit log holds one grant.expiring entry for it.
func TestExpiringNotice(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var e *env
	h := &hook{t: t, secret: secret, attempts: map[string]int{}, now: func() time.Time { return e.clock.Now() }}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e = newEnv(t, func(c *jitd.ServeConfig) {
		c.Webhooks = []notify.Endpoint{{Name: "expiring", URL: srv.URL, SecretFile: secretFile}}
		c.ExpiringLead = 2 * time.Minute
		c.SweepEvery = 10 * time.Millisecond
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := e.background(ctx, dev, "watch")
	id, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m") // auto-approved, issued
	end := e.show(dev, id).GetNotAfter()
	eventually(t, 30*time.Second, "watch to show the issued grant", func() bool {
		return strings.Contains(w.out.String(), id+" ISSUED ")
	})
	if strings.Contains(w.out.String(), "expiring") {
		t.Fatalf("watch shows a notice at issuance:\n%s", w.out.String())
	}

	e.clock.Set(end.AsTime().Add(-2 * time.Minute))
	eventually(t, 30*time.Second, "the expiring webhook", func() bool { return h.count(id, notify.KindExpiring) == 1 })
	wantLine := " expiring, ends " + end.AsTime().UTC().Format(time.RFC3339)
	eventually(t, 30*time.Second, "watch to show the notice", func() bool {
		return strings.Contains(w.out.String(), id) && strings.Contains(w.out.String(), wantLine)
	})
	cancel()
	if res := w.wait(t); res.code != 0 {
		t.Fatalf("watch after interrupt: %s", res)
	}
	if got := e.show(dev, id).GetExpiringNotified(); !got.AsTime().Equal(end.AsTime()) {
		t.Errorf("expiring_notified %v; want the end %v", got.AsTime(), end.AsTime())
	}
	for _, ev := range h.eventsOf(id, notify.KindExpiring) {
		if !ev.NotAfter.Equal(end.AsTime()) || ev.State != "ISSUED" || !strings.Contains(ev.Text, "expires at") {
			t.Errorf("expiring event %+v; want ISSUED until %v", ev, end.AsTime())
		}
	}

	// The restarted jitd's own certificate starts at the fake clock's time,
	// ahead of the real one that clients check it by: from here on, what
	// it does is read from the webhook receiver and its audit log.
	e.restart()
	e.clock.Set(end.AsTime().Add(-time.Minute)) // after the notice, before the end
	if err := e.srv.Issuer().Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	e.clock.Set(end.AsTime().Add(time.Second))
	// One endpoint delivers in order: once expired is in, a second
	// expiring event would be in before it.
	eventually(t, 30*time.Second, "the expired webhook", func() bool { return h.count(id, notify.KindExpired) == 1 })
	if n := h.count(id, notify.KindExpiring); n != 1 {
		t.Errorf("%d expiring events; want 1", n)
	}
	var notices []map[string]string
	log := e.srv.AuditLog()
	for i := range log.Size() {
		en, err := log.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		if en.Subject == id && en.Action == audit.ActionGrantExpiring {
			notices = append(notices, en.Details)
		}
	}
	if len(notices) != 1 || notices[0]["not_after"] != end.AsTime().UTC().Format(time.RFC3339) || notices[0]["lead"] != "2m0s" {
		t.Errorf("grant.expiring entries %v; want one for %v with lead 2m0s", notices, end.AsTime())
	}
}

// eventsOf returns the events of kind h accepted for request id.
func (h *hook) eventsOf(id string, kind notify.Kind) []notify.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []notify.Event
	for _, ev := range h.events {
		if ev.RequestID == id && ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// count returns how many events of kind h accepted for request id.
func (h *hook) count(id string, kind notify.Kind) int { return len(h.eventsOf(id, kind)) }
