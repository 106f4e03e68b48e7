package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"

	"github.com/jitgrant/jitgrant/examples/ledger/ledgerserver"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The policy auto-approves the payments workload's refunds on accounts/*.
const policy = `version: 1
max_ttl: 1h
groups:
  ops: {members: ["spiffe://example.org/person/alice"]}
permissions:
  watch_revocations: ["spiffe://example.org/service/*"]
rules:
  - name: payments-refunds
    requesters: ["spiffe://example.org/workload/payments"]
    scopes:
      - method: /bank.v1.Ledger/Refund
        resources: ["accounts/*"]
    max_ttl: 10m
    approvals:
      - {count: 1, from: [ops]}
    auto_approve: 'true'
`

const ledgerID = "spiffe://example.org/service/ledger"

// TestWorkloadRefund runs the whole flow in-process: jitd with its Workload
// API socket and an entry for this process's uid, the example ledger, and
// the workload program, which gets its identity, asks for a refund grant,
// has it auto-approved, picks the grant SVID by hint and refunds.
func TestWorkloadRefund(t *testing.T) {
	dir := t.TempDir()
	data := jitd.DataDir(filepath.Join(dir, "data"))
	if err := jitd.Init(jitd.InitConfig{Dir: data, TrustDomain: "example.org", KeyType: "ec-p256"}); err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	sock := filepath.Join(dir, "agent.sock")
	srv, err := jitd.Start(context.Background(), jitd.ServeConfig{
		Dir: data, Listen: "127.0.0.1:0", PolicyPath: policyPath, WorkloadSocket: sock,
		Entries: []attest.EntryConfig{{ID: "spiffe://example.org/workload/payments", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}},
		Clock:   time.Now,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("jitd Stop: %v", err)
		}
	})

	// The ledger, with an SVID minted by jitd's CA.
	td := spiffeid.RequireTrustDomainFromString("example.org")
	c, err := ca.LoadFiles(ca.Config{TrustDomain: td}, data.CACert(), filepath.Join(string(data), "ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := c.Mint(ca.Request{ID: spiffeid.RequireFromString(ledgerID), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ledger, err := ledgerserver.Start(ctx, ledgerserver.Config{
		Listen: "127.0.0.1:0", SVIDSource: svid, BundleSource: c.Bundle(),
		Issuer: srv.Addr(), // follows revocations, fail closed
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ledger.Stop)
	// Until its feed has reached jitd, the ledger refuses every grant.
	for deadline := time.Now().Add(20 * time.Second); ledger.Feed().LastContact().IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("the ledger's revocation feed never reached jitd\nledger log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg := config{
		workloadSocket: "unix://" + sock, issuer: srv.Addr(),
		ledger: ledger.Addr(), ledgerID: ledgerID,
		scopes: []string{"/bank.v1.Ledger/Refund@accounts/42"}, ttl: 5 * time.Minute, reason: "INC-42",
		call: "refund", account: "accounts/42", amountCents: 1250,
		waitTimeout: 20 * time.Second,
	}
	var out bytes.Buffer
	cfg.out = &out
	if err := run(ctx, cfg); err != nil {
		t.Fatalf("run: %v\noutput:\n%s\nledger log:\n%s", err, out.String(), logs.String())
	}
	if got := ledger.Ledger.Balance("accounts/42"); got != 1250 {
		t.Errorf("balance of accounts/42 = %d, want 1250", got)
	}
	if !strings.Contains(out.String(), "accounts/42 balance 1250 cents") {
		t.Errorf("output does not show the new balance:\n%s", out.String())
	}
	if !strings.Contains(logs.String(), "caller=spiffe://example.org/workload/payments") {
		t.Errorf("the ledger did not log the caller:\n%s", logs.String())
	}

	// A grant for accounts/42 does not reach accounts/7.
	other := cfg
	other.account = "accounts/7"
	out.Reset()
	// Each refusal is checked for who refused and why: the ledger's
	// verifier for a resource outside the grant, the issuer's policy for a
	// method no rule allows.
	denials := []struct {
		name     string
		cfg      config
		wantCode codes.Code
		wantMsg  string
	}{
		{"refund on accounts/7 with a grant for accounts/42", other, codes.PermissionDenied, "jitgrant: resource not granted for /bank.v1.Ledger/Refund"},
		// Policy has no rule for transfers: the request is not created.
		{"transfer outside policy", func() config {
			c := cfg
			c.call, c.scopes, c.to = "transfer", nil, "accounts/7"
			return c
		}(), codes.PermissionDenied, "no policy rule allows this request"},
	}
	for _, d := range denials {
		err := run(ctx, d.cfg)
		if s, _ := status.FromError(err); err == nil || status.Code(err) != d.wantCode || !strings.Contains(s.Message(), d.wantMsg) {
			t.Errorf("%s: %v, want %v with %q", d.name, err, d.wantCode, d.wantMsg)
		}
	}
	if got := ledger.Ledger.Balance("accounts/7"); got != 0 {
		t.Errorf("balance of accounts/7 = %d, want 0", got)
	}
}
