package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestMetrics scrapes jitd's /metrics after a short flow and checks every
// family the operator's dashboard needs, with the values the flow implies.
func TestMetrics(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	e := newEnv(t, func(c *jitd.ServeConfig) {
		c.MetricsListen, c.WorkloadSocket = "127.0.0.1:0", sock
		c.Entries = []attest.EntryConfig{{ID: "spiffe://example.org/workload/test", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}
		c.Clock = time.Now // the Workload API's certificates meet go-spiffe's real-time checks
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A refund approved by two (one duplicate review, one refused), a
	// balance read approved at once and then revoked, a break-glass grant,
	// a refund denied, a refund left pending, and a broken policy reload.
	refund, _ := e.refund("INC-1: metrics")
	e.ok(alice, "approve", refund)
	e.ok(alice, "approve", refund) // counts once
	e.fails(mallory, []string{"approve", refund})
	e.ok(bob, "approve", refund)
	balance, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")
	e.ok(dev, "revoke", balance, "--ack-timeout", "0")
	e.request(dev, "--break-glass", "--scope", mTransfer+"@accounts/9", "--ttl", "5m", "--reason", "INC-2: ledger down")
	denied, _ := e.refund("INC-3: no")
	e.ok(bob, "deny", denied, "--comment", "no")
	e.refund("INC-4: later")
	e.writePolicy("version: 1\nrules: [\n")
	if ev := e.srv.ReloadPolicy(); ev.Err == nil {
		t.Fatal("a broken policy loaded")
	}

	// A workload holds a Workload API stream open.
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+sock)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()

	base := "http://" + e.srv.MetricsAddr()
	body := scrape(t, base+"/metrics")
	for _, m := range []struct {
		name, labels string
		min, max     float64 // max < 0: no upper bound
	}{
		{"jitgrant_issuer_requests", `state="PENDING"`, 1, 1},
		{"jitgrant_issuer_requests", `state="APPROVED"`, 0, 0},
		{"jitgrant_issuer_requests", `state="ISSUED"`, 2, 2},
		{"jitgrant_issuer_request_changes_total", `action="grant.revoked",state="REVOKED"`, 1, 1},
		{"jitgrant_issuer_reviews_total", `verdict="approve"`, 2, 2},
		{"jitgrant_issuer_reviews_total", `verdict="deny"`, 1, 1},
		{"jitgrant_issuer_reviews_total", `verdict="duplicate"`, 1, 1},
		{"jitgrant_issuer_reviews_total", `verdict="refused"`, 1, 1},
		{"jitgrant_issuer_request_decision_seconds_count", "", 4, 4}, // refund, balance, break-glass approved; one denied
		{"jitgrant_issuer_mint_seconds_count", "", 3, 3},             // the three CSR grants
		{"jitgrant_issuer_active_grants", "", 2, 2},
		{"jitgrant_issuer_events_total", `event="break_glass"`, 1, 1},
		{"jitgrant_policy_loads_total", `result="ok"`, 0, -1},
		{"jitgrant_policy_loads_total", `result="failed"`, 1, 1},
		{"jitgrant_policy_last_load_ok", "", 0, 0},
		{"jitgrant_audit_append_latency_seconds_count", "", 10, -1},
		{"jitgrant_audit_checkpoint_age_seconds", "", 0, 3600},
		{"jitgrant_workload_api_streams", `method="/SpiffeWorkloadAPI/FetchX509SVID"`, 1, 1},
		{"jitgrant_issuer_watchers", `stream="revocations"`, 0, 0},
		{"jitgrant_verifier_decisions_total", `reason="public_method"`, 0, -1},
	} {
		v, ok := metric(body, m.name, m.labels)
		if !ok || v < m.min || (m.max >= 0 && v > m.max) {
			t.Errorf("%s{%s} = %v (found %v), want %v to %v", m.name, m.labels, v, ok, m.min, m.max)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", path, resp, err)
			continue
		}
		resp.Body.Close()
	}
}
