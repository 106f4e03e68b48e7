package issuer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/mod/sumdb/note"
)

const testPolicy = `
version: 1
max_ttl: 1h
groups:
  sre:      {members: ["spiffe://example.org/person/alice", "spiffe://example.org/person/carol"]}
  security: {members: ["spiffe://example.org/person/bob", "spiffe://example.org/person/carol"]}
permissions:
  list_all:   [security]
  revoke_any: [security]
  export_audit: ["spiffe://example.org/auditor"]
  watch_revocations: ["spiffe://example.org/service/ledger"]
rules:
  - name: refund
    requesters: ["spiffe://example.org/person/*", "spiffe://example.org/workload/*"]
    scopes:
      - method: /bank.v1.Ledger/Refund
        resources: ["accounts/*"]
    max_ttl: 15m
    reason: {required: true, pattern: '^INC-[0-9]+'}
    approvals:
      - {count: 1, from: [sre]}
      - {count: 1, from: [security]}
    pending_timeout: 30m
  - name: read
    requesters: ["spiffe://example.org/person/*", "spiffe://example.org/workload/*"]
    scopes:
      - method: /bank.v1.Ledger/GetBalance
    max_ttl: 10m
    approvals:
      - {count: 1, from: [sre]}
    auto_approve: 'ttl <= duration("5m")'
  - name: admin
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.LedgerAdmin/*
    max_ttl: 30m
    reason: {required: true}
    approvals:
      - {count: 1, from: [security]}
    break_glass: true
`

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	jitdID  = spiffeid.RequireFromPath(td, "/jitd")
	dev     = spiffeid.RequireFromPath(td, "/person/dev")
	alice   = spiffeid.RequireFromPath(td, "/person/alice") // sre
	bob     = spiffeid.RequireFromPath(td, "/person/bob")   // security
	carol   = spiffeid.RequireFromPath(td, "/person/carol") // sre and security
	mallory = spiffeid.RequireFromPath(td, "/person/mallory")
	ledger  = spiffeid.RequireFromPath(td, "/service/ledger") // watch_revocations
)

// change is one call of issuer.Config.OnChange.
type change struct {
	action audit.Action
	r      *issuer.Request
}

type env struct {
	t        *testing.T
	dir      string
	clock    *fakeclock.Clock
	ca       *ca.CA
	db       *kv.DB
	log      *audit.Log
	store    *issuer.BadgerStore
	policies *policy.Store
	is       *issuer.Issuer
	// expiringLead is the Config.ExpiringLead of the issuers open makes.
	expiringLead time.Duration

	mu      sync.Mutex
	changes []change // every OnChange call, in order
}

// onChange records a change; it is every env issuer's Config.OnChange.
func (e *env) onChange(r *issuer.Request, action audit.Action) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.changes = append(e.changes, change{action: action, r: r})
}

// changesOf returns the recorded changes of request id.
func (e *env) changesOf(id string) []change {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []change
	for _, c := range e.changes {
		if c.r.ID == id {
			out = append(out, c)
		}
	}
	return out
}

// newEnv starts an issuer on a new data directory with testPolicy.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: fakeclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))}
	c, err := ca.Generate(ca.Config{TrustDomain: td, Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.ca = c
	p, err := policy.Parse([]byte(testPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies = policy.NewStore(p)
	e.open()
	return e
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// open opens (or reopens) the database, log, store and issuer.
func (e *env) open() {
	t := e.t
	t.Helper()
	db, err := kv.Open(filepath.Join(e.dir, "db"), kv.Config{Logger: quiet(), GCInterval: -1})
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
	e.db, e.log = db, log
	e.store = issuer.NewBadgerStore(db.DB, log)
	e.is, err = issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(), OnChange: e.onChange, ExpiringLead: e.expiringLead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
}

func (e *env) close() {
	if e.is != nil {
		e.is.Close() // its timers do nothing more
	}
	if e.log != nil {
		e.log.Close()
		e.db.Close()
		e.log, e.db = nil, nil
	}
}

func csrFor(t *testing.T, id spiffeid.ID) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return csrWithKey(t, id, key)
}

// csrWithKey returns a CSR for id signed with key.
func csrWithKey(t *testing.T, id spiffeid.ID, key crypto.Signer) []byte {
	t.Helper()
	u, _ := url.Parse(id.String())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func refund(t *testing.T, who spiffeid.ID) issuer.CreateInput {
	return issuer.CreateInput{
		Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}},
		TTL:    10 * time.Minute, Reason: "INC-42: refund a double charge", CSR: csrFor(t, who),
	}
}

// create makes a request and fails the test on error.
func (e *env) create(who spiffeid.ID, in issuer.CreateInput) *issuer.Request {
	e.t.Helper()
	r, _, err := e.is.Create(context.Background(), who, in)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return r
}

func (e *env) review(who spiffeid.ID, id string, approve bool) (*issuer.ReviewResult, error) {
	return e.is.Review(context.Background(), who, id, approve, "")
}

func (e *env) get(id string) *issuer.Request {
	e.t.Helper()
	r, err := e.store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// entries returns the actions of the audit log, in order.
func (e *env) entries() []audit.Action {
	e.t.Helper()
	var out []audit.Action
	for i := range e.log.Size() {
		en, err := e.log.Entry(i)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, en.Action)
	}
	return out
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func refundRecord() audit.Record {
	return audit.Record{Actor: jitdID.String(), Action: audit.ActionRequestDenied, Subject: "x"}
}

// newRealClockIssuer returns an issuer over e's store on the real clock,
// with a CA of its own made at the real time.
func newRealClockIssuer(t *testing.T, e *env) *issuer.Issuer {
	t.Helper()
	c, err := ca.Generate(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	is, err := issuer.New(issuer.Config{CA: c, Store: e.store, Policies: e.policies, ID: jitdID, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	return is
}
