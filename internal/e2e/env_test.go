package e2e

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

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	trustDomain = "example.org"
	mRefund     = "/bank.v1.Ledger/Refund"
	mTransfer   = "/bank.v1.Ledger/Transfer"
	mBalance    = "/bank.v1.Ledger/GetBalance"
)

// The people of the tests, by name.
const (
	dev     = "dev"     // asks for access
	alice   = "alice"   // sre
	bob     = "bob"     // security
	mallory = "mallory" // in no group
	auditor = "auditor" // may export the audit log
)

func personID(name string) string {
	if name == auditor {
		return "spiffe://example.org/auditor/ann"
	}
	return "spiffe://example.org/person/" + name
}

// testPolicy: refunds need one SRE and one security engineer and a ticket;
// short balance reads are automatic; dev may break glass on the ledger.
const testPolicy = `version: 1
max_ttl: 1h
groups:
  sre:
    members: ["spiffe://example.org/person/alice"]
  security:
    members: ["spiffe://example.org/person/bob"]
permissions:
  list_all: [security]
  revoke_any: [security]
  export_audit: ["spiffe://example.org/auditor/ann"]
rules:
  - name: ledger-refund
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/Refund
        resources: ["accounts/*"]
    max_ttl: 15m
    reason:
      required: true
      pattern: '^INC-[0-9]+'
    approvals:
      - {count: 1, from: [sre]}
      - {count: 1, from: [security]}
    pending_timeout: 30m
  - name: ledger-balance
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/GetBalance
    max_ttl: 30m
    approvals:
      - {count: 1, from: [sre]}
    auto_approve: 'ttl <= duration("5m")'
  - name: ledger-break-glass
    requesters: ["spiffe://example.org/person/dev"]
    scopes:
      - method: /bank.v1.Ledger/*
    max_ttl: 15m
    reason: {required: true}
    approvals:
      - {count: 1, from: [security]}
    break_glass: true
`

// env is one jitd, started in-process on a fresh data directory with the
// test policy, and the identities of the test's people.
type env struct {
	t     *testing.T
	dir   jitd.DataDir
	cfg   jitd.ServeConfig
	clock *fakeclock.Clock
	srv   *jitd.Server
	ids   map[string]string // person -> identity directory
	logs  *syncbuf.Buffer
}

// newEnv initializes a data directory, enrolls everyone, and starts jitd.
// mutate may adjust the serve configuration.
func newEnv(t *testing.T, mutate func(*jitd.ServeConfig)) *env {
	t.Helper()
	root := t.TempDir()
	// The fake clock starts at the real time: the client side (go-spiffe's
	// credentials) checks the server's certificate at the real time, so it
	// only moves forward at the end of a test.
	e := &env{t: t, dir: jitd.DataDir(filepath.Join(root, "data")), clock: fakeclock.New(time.Now()),
		ids: map[string]string{}, logs: &syncbuf.Buffer{}}
	// KeyType is documented to default to ec-p256, but Init rejects "".
	if err := jitd.Init(jitd.InitConfig{Dir: e.dir, TrustDomain: trustDomain, KeyType: "ec-p256", Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.writePolicy(testPolicy)
	ctx := context.Background()
	for _, name := range []string{dev, alice, bob, mallory, auditor} {
		out := filepath.Join(root, "id", name)
		if _, err := jitd.Enroll(ctx, jitd.EnrollConfig{Dir: e.dir, ID: personID(name), TTL: 4 * time.Hour, Out: out, Clock: e.clock.Now}); err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		e.ids[name] = out
	}
	e.cfg = jitd.ServeConfig{
		Dir: e.dir, Listen: "127.0.0.1:0", Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.start()
	t.Cleanup(func() {
		if e.srv != nil {
			if err := e.srv.Stop(); err != nil {
				t.Errorf("jitd Stop: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("jitd log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) start() {
	e.t.Helper()
	srv, err := jitd.Start(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatalf("jitd.Start: %v", err)
	}
	e.srv = srv
}

// restart stops jitd and starts it again on the same data directory.
func (e *env) restart() {
	e.t.Helper()
	if err := e.srv.Stop(); err != nil {
		e.t.Fatalf("jitd Stop: %v", err)
	}
	e.srv = nil
	e.start()
}

func (e *env) writePolicy(content string) {
	e.t.Helper()
	if err := os.WriteFile(e.dir.Policy(), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// result is what one jitctl run printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// jitctl runs jitctl in-process as who against the env's jitd.
func (e *env) jitctl(who string, args ...string) result {
	return e.jitctlCtx(context.Background(), who, nil, args...)
}

// jitctlCtx is jitctl with a context; stdout, when not nil, receives the
// output as it is written.
func (e *env) jitctlCtx(ctx context.Context, who string, stdout io.Writer, args ...string) result {
	full := append([]string{"--server", e.srv.Addr(), "--identity", e.ids[who]}, args...)
	var out, errOut bytes.Buffer
	w := io.Writer(&out)
	if stdout != nil {
		w = io.MultiWriter(&out, stdout)
	}
	code := jitctl.Main(ctx, full, w, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// ok runs jitctl and fails the test unless it exits 0.
func (e *env) ok(who string, args ...string) result {
	e.t.Helper()
	r := e.jitctl(who, args...)
	if r.code != 0 {
		e.t.Fatalf("%s: jitctl %s: %s", who, strings.Join(args, " "), r)
	}
	return r
}

// fails runs jitctl and fails the test unless it exits 3 (denied or
// refused) with a one-line error on stderr containing each of want.
func (e *env) fails(who string, args []string, want ...string) result {
	e.t.Helper()
	r := e.jitctl(who, args...)
	if r.code != jitctl.ExitDenied {
		e.t.Fatalf("%s: jitctl %s: want exit %d, got %s", who, strings.Join(args, " "), jitctl.ExitDenied, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			e.t.Errorf("%s: jitctl %s: stderr %q lacks %q", who, strings.Join(args, " "), r.stderr, w)
		}
	}
	return r
}

// request runs jitctl request as who (with --out set to a new directory)
// and returns the request ID, the first line of its output, and the
// directory.
func (e *env) request(who string, args ...string) (id, dir string) {
	e.t.Helper()
	dir = filepath.Join(e.t.TempDir(), "grant")
	r := e.ok(who, append([]string{"request", "--out", dir}, args...)...)
	id, _, _ = strings.Cut(r.stdout, "\n")
	if !strings.HasPrefix(id, "r") || len(id) != 27 {
		e.t.Fatalf("request: first line %q is not a request ID\n%s", id, r)
	}
	return id, dir
}

// refund asks, as dev, for a refund on accounts/* for 10 minutes.
func (e *env) refund(reason string) (id, dir string) {
	e.t.Helper()
	return e.request(dev, "--scope", mRefund+"@accounts/*", "--ttl", "10m", "--reason", reason)
}

// show returns request id as who sees it, through jitctl show -o json.
func (e *env) show(who, id string) *pb.AccessRequest {
	e.t.Helper()
	r := e.ok(who, "-o", "json", "show", id)
	var out pb.AccessRequest
	if err := protojson.Unmarshal([]byte(r.stdout), &out); err != nil {
		e.t.Fatalf("show -o json: %v\n%s", err, r.stdout)
	}
	return &out
}

// wantState fails the test unless who sees request id in state want.
func (e *env) wantState(who, id string, want pb.State) *pb.AccessRequest {
	e.t.Helper()
	r := e.show(who, id)
	if r.GetState() != want {
		e.t.Fatalf("request %s is %v, want %v: %v", id, r.GetState(), want, r)
	}
	return r
}

// listAll lists every request, as bob (list_all), through jitctl.
func (e *env) listAll() map[string]pb.State {
	e.t.Helper()
	r := e.ok(bob, "-o", "json", "list", "--all-pages", "--limit", "7")
	var resp pb.ListRequestsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		e.t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]pb.State{}
	for _, req := range resp.GetRequests() {
		out[req.GetId()] = req.GetState()
	}
	return out
}

// exportAudit exports the whole audit log as the auditor to a file, checks
// it with jitctl audit verify, and returns it parsed.
func (e *env) exportAudit() *audit.Export {
	e.t.Helper()
	file := filepath.Join(e.t.TempDir(), "audit.jsonl")
	e.ok(auditor, "audit", "export", "--out", file)
	r := e.ok(auditor, "audit", "verify", file, "--key", e.dir.AuditPublicKey())
	if !strings.HasPrefix(r.stdout, "OK: ") {
		e.t.Fatalf("audit verify: %s", r)
	}
	f, err := os.Open(file)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	ex, err := audit.ParseExport(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return ex
}

// conn returns a connection to the issuer API authenticated as who.
func (e *env) conn(who string) *grpc.ClientConn {
	e.t.Helper()
	svid, err := x509svid.Load(filepath.Join(e.ids[who], "svid.pem"), filepath.Join(e.ids[who], "svid.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	bundle, err := x509bundle.Load(td, filepath.Join(e.ids[who], "bundle.pem"))
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(jitd.ServerID(td)))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// client returns an issuer API client authenticated as who, for tests that
// drive the API directly.
func (e *env) client(who string) pb.IssuerClient {
	e.t.Helper()
	return pb.NewIssuerClient(e.conn(who))
}
