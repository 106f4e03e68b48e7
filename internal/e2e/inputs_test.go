package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/inputs"
	"github.com/jitgrant/jitgrant/issuer/notify"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
)

// inputsPolicy is testPolicy with two rules first (before its break-glass
// rule for dev covers all of the ledger).
var inputsPolicy = strings.Replace(testPolicy, "rules:\n", "rules:\n"+inputRules, 1)

const inputRules = `  - name: ledger-writeoff
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/WriteOff
        resources: ["accounts/*"]
    max_ttl: 15m
    reason:
      required: true
      pattern: '^(?P<ticket>INC-[0-9]+): .+'
    ticket_check: tracker
    approvals:
      - {count: 1, from: [sre]}
    auto_approve: 'ticket.open && ticket.assignee == "dev"'
  - name: ledger-oncall-read
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/ListTransactions
    max_ttl: 1h
    approvals:
      - {count: 1, from: [security]}
    auto_approve: 'oncall.now && "sre-primary" in oncall.schedules && ttl <= duration("30m")'
`

// TestTicketCheckAndOnCall runs jitd with a ticket checker (a real signed
// HTTP endpoint on loopback) and an on-call rotation file: a write-off
// naming a closed ticket is denied with the reason, one naming an open
// ticket assigned to the requester is issued at once; the SRE on call gets
// read access auto-approved for 30 minutes, the one off call does not.
func TestTicketCheckAndOnCall(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(dir, "tracker.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var e *env
	tracker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(secret, body, r.Header.Get(notify.HeaderSignature), e.clock.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req struct{ Ticket string }
		json.Unmarshal(body, &req)
		open := req.Ticket == "INC-1"
		out, _ := json.Marshal(map[string]any{"ticket": req.Ticket, "exists": true, "open": open, "assignee": "dev"})
		w.Header().Set(notify.HeaderSignature, notify.Sign(secret, out, e.clock.Now()))
		w.Write(out)
	}))
	defer tracker.Close()
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	rota := filepath.Join(dir, "oncall.yaml")
	if err := os.WriteFile(rota, []byte(`schedules:
  - name: sre-primary
    rotation:
      start: `+start.Format(time.RFC3339)+`
      shift: 24h
      members: [spiffe://example.org/person/alice, spiffe://example.org/person/bob]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(inputsPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, func(c *jitd.ServeConfig) {
		c.PolicyPath = policyFile
		c.TicketCheckers = []inputs.Endpoint{{Name: "tracker", URL: tracker.URL, SecretFile: secretFile}}
		c.OnCall = &inputs.OnCallSource{File: rota}
	})
	wo := func(reason string) []string {
		return []string{"request", "--out", filepath.Join(t.TempDir(), "g"), "--scope", "/bank.v1.Ledger/WriteOff@accounts/1", "--ttl", "5m", "--reason", reason}
	}
	e.fails(dev, wo("INC-2: closed"), "ticket INC-2 is not open")
	id, _ := e.request(dev, wo("INC-1: duplicate charge")[3:]...)
	e.wantState(dev, id, pb.State_STATE_ISSUED)

	read := []string{"--scope", "/bank.v1.Ledger/ListTransactions", "--ttl", "30m"}
	id, _ = e.request(alice, read...)
	e.wantState(alice, id, pb.State_STATE_ISSUED)
	r := e.ok(bob, append([]string{"request", "--out", filepath.Join(t.TempDir(), "g")}, read...)...)
	id, _, _ = strings.Cut(r.stdout, "\n")
	e.wantState(bob, id, pb.State_STATE_PENDING)

	// A bad checker stops jitd at start, naming it.
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	e.srv = nil
	bad := e.cfg
	bad.TicketCheckers = []inputs.Endpoint{{Name: "tracker", URL: "http://tickets.example.org/check", SecretFile: secretFile}}
	if srv, err := jitd.Start(context.Background(), bad); err == nil {
		srv.Stop()
		t.Fatal("jitd started with a plain http ticket checker off loopback")
	} else if !strings.Contains(err.Error(), "jitd: policy inputs: inputs: ticket_checkers[0] (tracker): url: plain http") {
		t.Errorf("Start: %v", err)
	}
}
