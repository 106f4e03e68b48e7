package wlapi_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/jitgrant/jitgrant/issuer/wlapi"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/mod/sumdb/note"
)

const testPolicy = `
version: 1
max_ttl: 1h
groups:
  sre: {members: ["spiffe://example.org/person/alice"]}
rules:
  - name: read
    requesters: ["spiffe://example.org/workload/*"]
    scopes:
      - method: /bank.v1.Ledger/GetBalance
    max_ttl: 10m
    approvals:
      - {count: 1, from: [sre]}
    auto_approve: 'ttl <= duration("5m")'
    extend: {max_total: 10m, auto_approve: 'true'}
`

var (
	td         = spiffeid.RequireTrustDomainFromString("example.org")
	jitdID     = spiffeid.RequireFromPath(td, "/jitd")
	workloadID = spiffeid.RequireFromPath(td, "/workload/test")
	ledgerID   = spiffeid.RequireFromPath(td, "/service/ledger")
)

// env is an issuer and a Workload API server on a Unix socket in a
// temporary directory.
type env struct {
	t     testing.TB
	clock *fakeclock.Clock
	ca    *ca.CA
	jwt   *jwtsvid.Signer
	is    *issuer.Issuer
	srv   *wlapi.Server
	path  string
	// entries are the registration entries in force; tests swap them.
	entries atomic.Pointer[attest.Entries]
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// uidEntries returns entries giving workloadID to callers of uid, then a
// second identity to the same callers.
func uidEntries(t testing.TB, uid int) attest.Entries {
	t.Helper()
	sel := "unix:uid:" + strconv.Itoa(uid)
	es, err := attest.ParseEntries([]attest.EntryConfig{
		{ID: workloadID.String(), Selectors: []string{sel}, TTL: "1h"},
		{ID: "spiffe://example.org/workload/other", Selectors: []string{sel}, TTL: "10m"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// newEnv starts an issuer and a Workload API server whose entries match
// callers of uid.
func newEnv(t testing.TB, uid int) *env {
	t.Helper()
	return newEnvWith(t, uid, nil)
}

// newEnvWith is newEnv with seed, when not nil, called on the store before
// the issuer starts over it, at the clock's time.
func newEnvWith(t testing.TB, uid int, seed func(issuer.Store, time.Time)) *env {
	t.Helper()
	e := &env{t: t, clock: fakeclock.New(time.Now().UTC())}
	var err error
	if e.ca, err = ca.Generate(ca.Config{TrustDomain: td, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if e.jwt, err = jwtsvid.GenerateSigner(jwtsvid.Config{TrustDomain: td, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(testPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := kv.Open(filepath.Join(t.TempDir(), "db"), kv.Config{Logger: quiet(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(db.DB, audit.Config{Signer: signer, Origin: "jitgrant audit example.org", Actor: jitdID.String(), Now: e.clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(); db.Close() })
	store := issuer.NewBadgerStore(db.DB, log)
	if seed != nil {
		seed(store, e.clock.Now())
	}
	e.is, err = issuer.New(issuer.Config{CA: e.ca, Store: store, Policies: policy.NewStore(p), ID: jitdID, Clock: e.clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// The test binary was just written: an attestor clock a minute ahead
	// takes it out of the attestor's racy window, so that its hash is
	// cached as it is for any executable on a real host.
	att, err := attest.New(attest.Config{Logger: quiet(), Clock: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	entries := uidEntries(t, uid)
	e.entries.Store(&entries)
	e.srv, err = wlapi.New(wlapi.Config{
		CA: e.ca, JWT: e.jwt, Issuer: e.is, Attestor: att,
		Entries: func() attest.Entries { return *e.entries.Load() },
		Clock:   e.clock.Now, Logger: quiet(),
		Jitter: func(time.Duration) time.Duration { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.path = filepath.Join(t.TempDir(), "wl.sock")
	lis, err := wlapi.Listen(e.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(lis) }()
	t.Cleanup(func() {
		e.srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// addr is the socket's address for go-spiffe's client.
func (e *env) addr() workloadapi.ClientOption { return workloadapi.WithAddr("unix://" + e.path) }

// grant creates an auto-approved grant of workloadID made without a CSR.
func (e *env) grant() *issuer.Request {
	e.t.Helper()
	r, _, err := e.is.Create(context.Background(), workloadID, issuer.CreateInput{
		Scopes: []grant.Scope{{Method: testledger.GetBalance}}, TTL: 5 * time.Minute,
	})
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	if r.State != issuer.StateIssued {
		e.t.Fatalf("grant %s is %s, want ISSUED", r.ID, r.State)
	}
	return r
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var uid = os.Getuid()
