package issuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/inputs"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
)

const ticketRule = `  - name: writeoff
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/WriteOff
    max_ttl: 10m
    reason: {required: true, pattern: '^(INC-[0-9]+): '}
    ticket_check: tracker
    approvals:
      - {count: 1, from: [sre]}
    auto_approve: 'ticket.open'
`

// TestCreateFetchesInputs runs the issuer with a real inputs.Source and a
// ticket checker on loopback: the ticket is checked only for the rule that
// names a checker, before deciding; a closed ticket is denied, and the
// audited denial says why; an open one is auto-approved.
func TestCreateFetchesInputs(t *testing.T) {
	e := newEnv(t)
	p, err := policy.Parse([]byte(testPolicy+ticketRule), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies.Swap(p)
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if notify.Verify(secret, body, r.Header.Get(notify.HeaderSignature), e.clock.Now(), 0) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req struct{ Ticket string }
		json.Unmarshal(body, &req)
		out, _ := json.Marshal(map[string]any{"ticket": req.Ticket, "exists": true, "open": req.Ticket == "INC-1"})
		w.Header().Set(notify.HeaderSignature, notify.Sign(secret, out, e.clock.Now()))
		w.Write(out)
	}))
	defer srv.Close()
	src, err := inputs.New(inputs.Config{
		TicketCheckers: []inputs.Endpoint{{Name: "tracker", URL: srv.URL, SecretFile: secretFile}},
		Clock:          e.clock.Now, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	is, err := issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(), Inputs: src})
	if err != nil {
		t.Fatal(err)
	}
	writeoff := func(reason string, dry bool) issuer.CreateInput {
		return issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/WriteOff"}}, TTL: 5 * time.Minute, Reason: reason, DryRun: dry}
	}
	tests := []struct {
		name    string
		in      issuer.CreateInput
		want    policy.Outcome
		errText string
		calls   int32
	}{
		{name: "rule without a check asks nothing", in: issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: time.Minute},
			want: policy.AutoApproved},
		{name: "dry run checks", in: writeoff("INC-1: x", true), want: policy.AutoApproved, calls: 1},
		{name: "closed ticket denied", in: writeoff("INC-2: x", false), want: policy.Denied, errText: "ticket INC-2 is not open", calls: 2},
		{name: "open ticket approved (cached)", in: writeoff("INC-1: x", false), want: policy.AutoApproved, calls: 2},
		{name: "no ticket in the reason: no call", in: writeoff("none: x", false), want: policy.Denied, errText: "reason does not match pattern", calls: 2},
	}
	for _, tt := range tests {
		r, d, err := is.Create(context.Background(), dev, tt.in)
		if d.Outcome != tt.want {
			t.Errorf("%s: outcome %s, want %s: %q", tt.name, d.Outcome, tt.want, d.Reasons)
		}
		if tt.errText != "" && (err == nil || !errors.Is(err, issuer.ErrInvalid) || !strings.Contains(err.Error(), tt.errText)) {
			t.Errorf("%s: error %v, want ErrInvalid with %q", tt.name, err, tt.errText)
		}
		if tt.errText == "" && !tt.in.DryRun && (err != nil || r == nil || r.State != issuer.StateIssued) {
			t.Errorf("%s: %v, %+v", tt.name, err, r)
		}
		if got := calls.Load(); got != tt.calls {
			t.Errorf("%s: %d calls to the checker, want %d", tt.name, got, tt.calls)
		}
	}
	found := false
	for i := range e.log.Size() {
		en, err := e.log.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		if en.Action == audit.ActionRequestDenied && strings.Contains(en.Details["why"], "ticket INC-2 is not open") {
			found = true
		}
	}
	if !found {
		t.Error("no audited denial says the ticket is not open")
	}
}
