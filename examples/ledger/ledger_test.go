package main

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/examples/ledger/ledgerserver"
	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLedgerFiles runs the ledger command with its SVID and bundle from
// files and calls it with a grant for Refund on accounts/42 only.
func TestLedgerFiles(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	c, err := ca.Generate(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	ledgerID := spiffeid.RequireFromPath(td, "/service/ledger")
	svid, err := c.Mint(ca.Request{ID: ledgerID, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := config{
		listen: "127.0.0.1:0",
		cert:   filepath.Join(dir, "svid.pem"), key: filepath.Join(dir, "svid.key"), bundle: filepath.Join(dir, "bundle.pem"),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg.cert, certPEM)
	writeFile(t, cfg.key, keyPEM)
	writeFile(t, cfg.bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Bundle().X509Authorities()[0].Raw}))

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *ledgerserver.Server, 1)
	cfg.started = func(s *ledgerserver.Server) { started <- s }
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
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
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the ledger to start")
	}

	g := &grant.Grant{ID: "req-1", Scopes: []grant.Scope{{Method: bankv1.Ledger_Refund_FullMethodName, Resources: []string{"accounts/42"}}}}
	gsvid, err := c.Mint(ca.Request{ID: spiffeid.RequireFromPath(td, "/workload/payments"), TTL: 5 * time.Minute, Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(
		verifier.ClientCredentials(gsvid, c.Bundle(), tlsconfig.AuthorizeID(ledgerID))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ledger := bankv1.NewLedgerClient(cc)

	res, err := ledger.Refund(ctx, &bankv1.RefundRequest{Account: "accounts/42", AmountCents: 1250})
	if err != nil || res.GetBalanceCents() != 1250 {
		t.Fatalf("Refund on the granted account: %v, %v", res, err)
	}
	if got := srv.Ledger.Balance("accounts/42"); got != 1250 {
		t.Errorf("balance of accounts/42 = %d, want 1250", got)
	}
	for name, call := range map[string]func() error{
		"Refund on another account": func() error {
			_, err := ledger.Refund(ctx, &bankv1.RefundRequest{Account: "accounts/7", AmountCents: 1})
			return err
		},
		"Transfer, not in the grant": func() error {
			_, err := ledger.Transfer(ctx, &bankv1.TransferRequest{Account: "accounts/42", To: "accounts/7", AmountCents: 1})
			return err
		},
		"GetBalance, not in the grant": func() error {
			_, err := ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: "accounts/42"})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	if got := srv.Ledger.Balance("accounts/7"); got != 0 {
		t.Errorf("balance of accounts/7 = %d after a refused refund, want 0", got)
	}
	if got := srv.Ledger.Balance("accounts/42"); got != 1250 {
		t.Errorf("balance of accounts/42 = %d after refused calls, want 1250", got)
	}
}

// TestSourcesFlags checks that the SVID source flags are exclusive and
// complete.
func TestSourcesFlags(t *testing.T) {
	for name, cfg := range map[string]config{
		"none":      {},
		"both":      {workloadSocket: "unix:///tmp/x.sock", cert: "a", key: "b", bundle: "c"},
		"no key":    {cert: "a", bundle: "c"},
		"no bundle": {cert: "a", key: "b"},
	} {
		if _, _, _, _, err := sources(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
