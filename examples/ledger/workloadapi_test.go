package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/examples/ledger/ledgerserver"
	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
)

const ledgerPolicy = `version: 1
max_ttl: 1h
groups:
  ops: {members: ["spiffe://example.org/person/alice"]}
permissions:
  watch_revocations: ["spiffe://example.org/service/*"]
rules:
  - name: refunds
    requesters: ["spiffe://example.org/workload/*"]
    scopes:
      - method: /bank.v1.Ledger/Refund
    approvals:
      - {count: 1, from: [ops]}
`

// TestLedgerWorkloadAPI runs the ledger command with its SVID and bundle
// from jitd's Workload API, following revocations from jitd (fail closed)
// and serving metrics, and calls it with a grant minted by jitd's CA.
func TestLedgerWorkloadAPI(t *testing.T) {
	dir := t.TempDir()
	data := jitd.DataDir(filepath.Join(dir, "data"))
	if err := jitd.Init(jitd.InitConfig{Dir: data, TrustDomain: "example.org", KeyType: "ec-p256"}); err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(ledgerPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	const ledgerID = "spiffe://example.org/service/ledger"
	jd, err := jitd.Start(context.Background(), jitd.ServeConfig{
		Dir: data, Listen: "127.0.0.1:0", PolicyPath: policyPath, WorkloadSocket: sock,
		Entries: []attest.EntryConfig{{ID: ledgerID, Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}},
		Clock:   time.Now,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := jd.Stop(); err != nil {
			t.Errorf("jitd Stop: %v", err)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *ledgerserver.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{
			listen: "127.0.0.1:0", metricsListen: "127.0.0.1:0",
			workloadSocket: "unix://" + sock, issuer: jd.Addr(), staleAfter: time.Minute,
			logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
			started: func(s *ledgerserver.Server) { started <- s },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var srv *ledgerserver.Server
	select {
	case srv = <-started:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the ledger to start")
	}
	for deadline := time.Now().Add(20 * time.Second); srv.Feed().LastContact().IsZero(); {
		if time.Now().After(deadline) {
			t.Fatal("the ledger's revocation feed never reached jitd")
		}
		time.Sleep(10 * time.Millisecond)
	}

	td := spiffeid.RequireTrustDomainFromString("example.org")
	c, err := ca.LoadFiles(ca.Config{TrustDomain: td}, data.CACert(), filepath.Join(string(data), "ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &grant.Grant{ID: "req-1", Scopes: []grant.Scope{{Method: bankv1.Ledger_Refund_FullMethodName}}}
	gsvid, err := c.Mint(ca.Request{ID: spiffeid.RequireFromPath(td, "/workload/payments"), TTL: 5 * time.Minute, Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(
		verifier.ClientCredentials(gsvid, c.Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString(ledgerID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	res, err := bankv1.NewLedgerClient(cc).Refund(ctx, &bankv1.RefundRequest{Account: "accounts/1", AmountCents: 99})
	if err != nil || res.GetBalanceCents() != 99 {
		t.Fatalf("Refund: %v, %v", res, err)
	}

	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "jitgrant_verifier_decisions_total") {
		t.Errorf("metrics lack the verifier's decisions:\n%s", body)
	}
}
