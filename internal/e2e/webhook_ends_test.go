package e2e

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/notify"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
)

// TestWebhooksForEveryGrantEnd: revocation, a use limit reached and expiry
// each end a grant with a webhook naming the cause, and an audit entry
// naming it too.
func TestWebhooksForEveryGrantEnd(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	// bob follows revocations (the ledger's part): he reports uses.
	policyPath := filepath.Join(dir, "policy.yaml")
	withWatch := strings.Replace(testPolicy, "  revoke_any: [security]\n", "  revoke_any: [security]\n  watch_revocations: [security]\n", 1)
	if err := os.WriteFile(policyPath, []byte(withWatch), 0o644); err != nil {
		t.Fatal(err)
	}
	var e *env
	h := &hook{t: t, secret: secret, attempts: map[string]int{}, now: func() time.Time { return e.clock.Now() }}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e = newEnv(t, func(c *jitd.ServeConfig) {
		c.PolicyPath = policyPath
		c.Webhooks = []notify.Endpoint{{Name: "ends", URL: srv.URL, SecretFile: secretFile}}
		c.SweepEvery = 10 * time.Millisecond
	})

	revoked, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")
	e.ok(dev, "revoke", revoked, "--ack-timeout", "0")

	limited, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m", "--use-limit", "1")
	if _, err := e.client(bob).ReportUse(context.Background(), &pb.ReportUseRequest{GrantId: limited, Uses: 1}); err != nil {
		t.Fatal(err)
	}

	expired, _ := e.request(dev, "--scope", mBalance, "--ttl", "1m")
	e.clock.Add(2 * time.Minute)
	eventually(t, 20*time.Second, "the sweeper to expire the grant", func() bool {
		return e.show(dev, expired).GetState() == pb.State_STATE_EXPIRED
	})

	for _, tt := range []struct {
		id    string
		kind  notify.Kind
		cause string
	}{
		{revoked, notify.KindRevoked, issuer.EndRevoked},
		{limited, notify.KindRevoked, issuer.EndUseLimit},
		{expired, notify.KindExpired, issuer.EndExpired},
	} {
		eventually(t, 20*time.Second, "the webhook of "+tt.cause, func() bool { return h.ended(tt.id, tt.kind, tt.cause) })
	}
	causes := map[string]string{}
	for _, en := range e.exportAudit().Entries {
		if c := en.Details["cause"]; c != "" {
			causes[en.Subject] = c
		}
	}
	if causes[revoked] != issuer.EndRevoked || causes[limited] != issuer.EndUseLimit || causes[expired] != issuer.EndExpired {
		t.Errorf("audited causes %v", causes)
	}
}

// ended reports whether h accepted an event of kind with cause for id.
func (h *hook) ended(id string, kind notify.Kind, cause string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.events {
		if ev.RequestID == id && ev.Kind == kind && ev.Cause == cause {
			return true
		}
	}
	return false
}
