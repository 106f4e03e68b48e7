package notify

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDelivery(t *testing.T) {
	const backoff = 100 * time.Millisecond
	tests := []struct {
		name       string
		statuses   []int
		retryAfter string
		wantCounts map[string]int
		wantWaits  []time.Duration // nil: the jittered backoff
		wantStatus string          // in the audit record; "": no record
	}{
		{name: "ok", statuses: []int{200}, wantCounts: map[string]int{"ok": 1}},
		{name: "any 2xx", statuses: []int{204}, wantCounts: map[string]int{"ok": 1}},
		{name: "503 twice then 200", statuses: []int{503, 503, 200}, wantCounts: map[string]int{"retry": 2, "ok": 1}},
		{name: "timeout and 429 are retried", statuses: []int{408, 429, 502, 200}, wantCounts: map[string]int{"retry": 3, "ok": 1}},
		{
			name: "Retry-After in seconds", statuses: []int{429, 200}, retryAfter: "7",
			wantCounts: map[string]int{"retry": 1, "ok": 1}, wantWaits: []time.Duration{7 * time.Second},
		},
		{
			name: "Retry-After as a date", statuses: []int{503, 200}, retryAfter: now.Add(9 * time.Second).Format(http.TimeFormat),
			wantCounts: map[string]int{"retry": 1, "ok": 1}, wantWaits: []time.Duration{9 * time.Second},
		},
		{
			name: "Retry-After capped", statuses: []int{503, 200}, retryAfter: "3600",
			wantCounts: map[string]int{"retry": 1, "ok": 1}, wantWaits: []time.Duration{20 * time.Second},
		},
		{name: "400 is not retried", statuses: []int{400}, wantCounts: map[string]int{"failed": 1}, wantStatus: "400"},
		{name: "410 is not retried", statuses: []int{503, 410}, wantCounts: map[string]int{"retry": 1, "failed": 1}, wantStatus: "410"},
		{name: "a redirect is not followed", statuses: []int{302}, wantCounts: map[string]int{"failed": 1}, wantStatus: "302"},
		{name: "5xx until MaxAttempts", statuses: []int{500}, wantCounts: map[string]int{"retry": 3, "failed": 1}, wantStatus: "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.statuses...)
			rc.retryAfter = tt.retryAfter
			h := newHarness(t, Config{MaxAttempts: 4, Backoff: backoff, MaxBackoff: 20 * time.Second}, rc.URL+"/hook")
			ev := event(KindIssued, 1)
			h.Notify(ev)
			if err := h.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got := rc.deliveries()
			attempts := tt.wantCounts["ok"] + tt.wantCounts["retry"] + tt.wantCounts["failed"]
			if len(got) != attempts {
				t.Fatalf("receiver got %d requests, want %d", len(got), attempts)
			}
			for i, d := range got {
				if d.sigErr != nil || d.kind != "issued" || d.id != got[0].id || d.event.ID != d.id || d.event.RequestID != "r1" {
					t.Errorf("request %d: %+v; want a signed issued event, with the first one's delivery ID %s", i, d, got[0].id)
				}
			}
			if c := h.counts(0); !maps.Equal(c, tt.wantCounts) {
				t.Errorf("counts = %v, want %v", c, tt.wantCounts)
			}
			waits := h.sleeper.waits()
			if len(waits) != tt.wantCounts["retry"] {
				t.Errorf("waited %d times, want once per retry (%d)", len(waits), tt.wantCounts["retry"])
			}
			if tt.wantWaits != nil && !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
			for i, w := range waits {
				if full := backoff << i; tt.wantWaits == nil && (w < full/2 || w > full) {
					t.Errorf("wait %d = %s, want in [%s, %s]", i, w, full/2, full)
				}
			}
			recs := h.audits.records()
			if tt.wantStatus == "" {
				if len(recs) != 0 {
					t.Errorf("audit records %v, want none", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("audit records %v, want one", recs)
			}
			want := map[string]string{"endpoint": "0", "event": got[0].id, "kind": "issued", "result": "failed", "status": tt.wantStatus}
			for k, v := range want {
				if recs[0].Details[k] != v {
					t.Errorf("audit detail %s = %q, want %q", k, recs[0].Details[k], v)
				}
			}
		})
	}
}

func TestDeadEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every attempt is refused
	url := "http://user:SECRETPASS@" + addr + "/hook/SECRETPATH?token=SECRETQUERY"
	h := newHarness(t, Config{Endpoints: []Endpoint{{Name: "dead", URL: url}}, MaxAttempts: 3})
	ev := event(KindBreakGlass, 7)
	h.Notify(ev)
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c := h.counts(0); !maps.Equal(c, map[string]int{"retry": 2, "failed": 1}) {
		t.Errorf("counts = %v, want 2 retries and a failure", c)
	}
	recs := h.audits.records()
	if len(recs) != 1 {
		t.Fatalf("audit records %v, want one", recs)
	}
	rec := recs[0]
	if rec.Actor != actor || rec.Action != audit.ActionWebhookFailed || rec.Subject != "r7" {
		t.Errorf("audit record %+v: want actor %s, action %s, subject r7", rec, actor, audit.ActionWebhookFailed)
	}
	d := rec.Details
	if d["endpoint"] != "dead" || d["url"] != "http://"+addr+"/…" || d["kind"] != "break_glass" || d["attempts"] != "3" ||
		d["result"] != "failed" || len(d["event"]) != 26 || d["error"] == "" || d["status"] != "" {
		t.Errorf("audit details %v", d)
	}
	if !strings.Contains(d["error"], "connection refused") {
		t.Errorf("error detail %q, want it to name the refused connection", d["error"])
	}
	for where, s := range map[string]string{"audit record": strings.Join(slices.Collect(maps.Values(d)), " "), "logs": h.logs.String()} {
		if strings.Contains(s, "SECRET") || strings.Contains(s, secret) {
			t.Errorf("%s show a secret:\n%s", where, s)
		}
	}
	if !strings.Contains(h.logs.String(), "notify: webhook delivery failed") {
		t.Errorf("logs do not report the failure:\n%s", h.logs)
	}
}

// TestNotifyNeverBlocks floods a notifier whose endpoint never answers: every
// Notify returns, and what does not fit in the queue is dropped, counted
// and audited.
func TestNotifyNeverBlocks(t *testing.T) {
	const events, queue = 10_000, 8
	rc := newHangingReceiver(t)
	h := newHarness(t, Config{Endpoints: []Endpoint{{URL: rc.URL, Timeout: time.Hour}}, QueueSize: queue})
	returned := 0
	for i := range events {
		h.Notify(event(KindCreated, i))
		returned++
	}
	if returned != events {
		t.Fatalf("%d Notify calls returned, want %d", returned, events)
	}
	// One event may be in flight, queue more wait; the rest are dropped.
	if dropped := h.counts(0)["dropped"]; dropped < events-queue-1 || dropped > events-queue {
		t.Errorf("dropped %d, want %d or %d", dropped, events-queue-1, events-queue)
	}
	rc.release()
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := h.counts(0)
	if c["ok"]+c["failed"]+c["dropped"] != events || c["ok"] == 0 {
		t.Errorf("counts %v do not add up to %d events", c, events)
	}
	audited := int(testutil.ToFloat64(h.metrics.auditFailures))
	for _, rec := range h.audits.records() {
		if rec.Details["result"] == "dropped" && strings.HasPrefix(rec.Details["error"], "queue full (8 events)") {
			audited++
		}
	}
	if audited != c["dropped"]+c["failed"] {
		t.Errorf("%d drops audited or counted as audit failures, want %d", audited, c["dropped"]+c["failed"])
	}
	// Logged when the queue fills, not per event; it may fill twice if the
	// worker took its first event only after the queue had filled.
	if n := strings.Count(h.logs.String(), "notify: dropping webhook events"); n < 1 || n > 2 {
		t.Errorf("the drops were logged %d times, want once or twice", n)
	}
}

// TestIsolation checks that an endpoint that never answers delays no other.
func TestIsolation(t *testing.T) {
	dead, live := newHangingReceiver(t), newReceiver(t, 200)
	h := newHarness(t, Config{Endpoints: []Endpoint{{URL: dead.URL, Timeout: time.Hour}, {URL: live.URL}}})
	for i := range 3 {
		h.Notify(event(KindRevoked, i))
	}
	for range 3 {
		<-live.delivered // the test's deadline is the only timeout
	}
	if got := len(dead.deliveries()); got != 0 {
		t.Errorf("the hanging endpoint answered %d requests", got)
	}
}

func TestEventFilter(t *testing.T) {
	revokes, all := newReceiver(t, 200), newReceiver(t, 200)
	h := newHarness(t, Config{Endpoints: []Endpoint{
		{URL: revokes.URL, Events: []string{"revoked", "break_glass"}},
		{URL: all.URL},
	}})
	for i, k := range Kinds() {
		h.Notify(event(k, i))
	}
	h.Close(context.Background())
	kinds := func(ds []delivery) (out []string) {
		for _, d := range ds {
			if d.sigErr != nil || d.kind != string(d.event.Kind) {
				t.Errorf("bad delivery %+v", d)
			}
			out = append(out, d.kind)
		}
		slices.Sort(out)
		return out
	}
	if got := kinds(revokes.deliveries()); !slices.Equal(got, []string{"break_glass", "revoked"}) {
		t.Errorf("filtered endpoint got %v", got)
	}
	if got := kinds(all.deliveries()); len(got) != len(Kinds()) {
		t.Errorf("unfiltered endpoint got %v", got)
	}
}

func TestNotifyFillsIn(t *testing.T) {
	rc := newReceiver(t, 200)
	h := newHarness(t, Config{}, rc.URL)
	h.Notify(Event{Kind: KindRevoked, RequestID: "r1", Requester: "spiffe://example.org/a", EndedBy: "spiffe://example.org/b"})
	h.Close(context.Background())
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("got %d deliveries", len(got))
	}
	ev := got[0].event
	if len(ev.ID) != 26 || !ev.Time.Equal(now) || ev.Text != ":no_entry_sign: grant r1 of spiffe://example.org/a revoked by spiffe://example.org/b" {
		t.Errorf("event %+v: want ID, Time and Text filled in", ev)
	}
}

func TestCloseDrains(t *testing.T) {
	rc := newReceiver(t, 200)
	h := newHarness(t, Config{}, rc.URL)
	for i := range 20 {
		h.Notify(event(KindIssued, i))
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := len(rc.deliveries()); got != 20 {
		t.Errorf("delivered %d events before Close returned, want 20", got)
	}
	h.Notify(event(KindIssued, 99))
	if c := h.counts(0); !maps.Equal(c, map[string]int{"ok": 20, "dropped": 1}) {
		t.Errorf("counts = %v, want 20 delivered and the one after Close dropped", c)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseAbandons(t *testing.T) {
	rc := newHangingReceiver(t)
	h := newHarness(t, Config{Endpoints: []Endpoint{{URL: rc.URL, Timeout: time.Hour}}})
	for i := range 3 {
		h.Notify(event(KindDecided, i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	if c := h.counts(0); !maps.Equal(c, map[string]int{"abandoned": 3}) {
		t.Errorf("counts = %v, want 3 abandoned", c)
	}
	if recs := h.audits.records(); len(recs) != 0 {
		t.Errorf("audit records %v for abandoned events", recs)
	}
}

func TestCollector(t *testing.T) {
	rc := newReceiver(t, 503, 200)
	h := newHarness(t, Config{Endpoints: []Endpoint{{Name: "slack", URL: rc.URL}}})
	h.Notify(event(KindIssued, 1))
	h.Close(context.Background())
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h.Collector()); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP jitgrant_webhook_deliveries_total Webhook events by endpoint and result: ok, retry (a failed attempt to be retried), failed (given up on), dropped (queue full or closed), abandoned (at shutdown).
# TYPE jitgrant_webhook_deliveries_total counter
jitgrant_webhook_deliveries_total{endpoint="slack",result="abandoned"} 0
jitgrant_webhook_deliveries_total{endpoint="slack",result="dropped"} 0
jitgrant_webhook_deliveries_total{endpoint="slack",result="failed"} 0
jitgrant_webhook_deliveries_total{endpoint="slack",result="ok"} 1
jitgrant_webhook_deliveries_total{endpoint="slack",result="retry"} 1
# HELP jitgrant_webhook_queue_depth Webhook events waiting for delivery, by endpoint.
# TYPE jitgrant_webhook_queue_depth gauge
jitgrant_webhook_queue_depth{endpoint="slack"} 0
# HELP jitgrant_webhook_audit_failures_total Audit entries for failed webhook deliveries that could not be written.
# TYPE jitgrant_webhook_audit_failures_total counter
jitgrant_webhook_audit_failures_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"jitgrant_webhook_deliveries_total", "jitgrant_webhook_queue_depth", "jitgrant_webhook_audit_failures_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "jitgrant_webhook_delivery_seconds"); err != nil || n != 1 {
		t.Errorf("delivery_seconds series: %d, %v", n, err)
	}
}
