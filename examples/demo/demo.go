package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"

	"github.com/jitgrant/jitgrant/examples/ledger/ledgerserver"
	"github.com/jitgrant/jitgrant/examples/workload/access"
	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// samplePolicy needs one SRE and one security approval for refunds and
// approves short balance checks automatically.
//
//go:embed policy.yaml
var samplePolicy []byte

// The demo's trust domain and identities.
const (
	trustDomain = "example.org"
	aliceID     = "spiffe://example.org/person/alice" // SRE
	bobID       = "spiffe://example.org/person/bob"   // security
	ledgerID    = "spiffe://example.org/service/ledger"
	paymentsID  = "spiffe://example.org/workload/payments"
)

// options configure a demo run.
type options struct {
	out     io.Writer // the narration
	color   bool
	verbose bool // copy jitd's and the ledger's logs to logOut as they come
	logOut  io.Writer
	keep    bool   // keep the temporary directory
	policy  []byte // default samplePolicy; tests break it on purpose
}

// demo is the running system: jitd, the ledger and the payments workload,
// all in this process, in a temporary directory.
type demo struct {
	opts    options
	n       *narrator
	dir     string
	data    jitd.DataDir
	jitd    *jitd.Server
	ledger  *ledgerserver.Server
	client  *access.Client
	sock    string // the Workload API's socket
	logs    *syncbuf.Buffer
	logger  *slog.Logger
	closers []func()

	// What the steps hand on to later steps.
	refundID string
	refund   *access.GrantConn
	export   string
}

// run sets the system up, runs every step and tears it down. It returns an
// error naming the first step that did not behave as narrated.
func run(ctx context.Context, opts options) (err error) {
	if opts.policy == nil {
		opts.policy = samplePolicy
	}
	d := &demo{opts: opts, n: &narrator{out: opts.out, color: opts.color}, logs: &syncbuf.Buffer{}}
	var logw io.Writer = d.logs
	if opts.verbose {
		logw = io.MultiWriter(d.logs, opts.logOut)
	}
	d.logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	defer func() {
		d.close()
		if err != nil && !opts.verbose && opts.logOut != nil {
			fmt.Fprintf(opts.logOut, "\nthe last lines jitd and the ledger logged:\n%s", tail(d.logs.String(), 40))
		}
	}()
	d.n.banner()
	if err := d.setUp(ctx); err != nil {
		return d.n.fail("setting up", err)
	}
	for i, s := range steps() {
		d.n.step(i+1, s.title)
		if err := s.run(d, ctx); err != nil {
			return d.n.fail(fmt.Sprintf("step %d (%s)", i+1, s.title), err)
		}
		d.n.ok()
	}
	d.n.done()
	return nil
}

// setUp makes the data directory, enrolls the people and the ledger, and
// starts jitd, the ledger and the workload's client.
func (d *demo) setUp(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "jitgrant-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	if d.opts.keep {
		d.n.say("working directory %s (kept)", dir)
	} else {
		d.closers = append(d.closers, func() { _ = os.RemoveAll(dir) })
		d.n.say("working directory %s (removed at the end)", dir)
	}
	d.data = jitd.DataDir(filepath.Join(dir, "data"))
	if err := jitd.Init(jitd.InitConfig{Dir: d.data, TrustDomain: trustDomain}); err != nil {
		return err
	}
	d.n.say("jitd init: a CA and an audit key for trust domain %s", trustDomain)
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, d.opts.policy, 0o644); err != nil {
		return err
	}
	d.n.say("policy: refunds need one SRE and one security approval; short balance checks are automatic")

	// jitd enroll works on a stopped jitd: enroll everyone first.
	for _, e := range []struct{ id, who string }{
		{aliceID, "alice (SRE)"}, {bobID, "bob (security)"}, {ledgerID, "the ledger service"},
	} {
		if _, err := jitd.Enroll(ctx, jitd.EnrollConfig{Dir: d.data, ID: e.id, TTL: 8 * time.Hour, Out: d.identity(e.id)}); err != nil {
			return err
		}
	}
	d.n.say("jitd enroll: alice (SRE), bob (security) and the ledger service")

	sock := filepath.Join(dir, "workload.sock")
	d.sock = sock
	d.jitd, err = jitd.Start(ctx, jitd.ServeConfig{
		Dir: d.data, Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", PolicyPath: policyPath,
		WorkloadSocket: sock, Logger: d.logger.With("component", "jitd"),
		MinTTL: time.Second, // the expired-grant step asks for a 2 s grant
		// Every process of this user is the payments workload: the demo
		// runs everything in one process.
		Entries: []attest.EntryConfig{{ID: paymentsID, Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}},
	})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func() { _ = d.jitd.Stop() })
	d.n.say("jitd serve: issuer API on %s, Workload API on %s, metrics on http://%s/metrics", d.jitd.Addr(), sock, d.jitd.MetricsAddr())

	if err := d.startLedger(ctx); err != nil {
		return err
	}
	d.n.say("ledger: bank.v1.Ledger on %s, protected by the verifier, following revocations from jitd", d.ledger.Addr())

	if d.client, err = access.Dial(ctx, "unix://"+sock, d.jitd.Addr()); err != nil {
		return err
	}
	d.closers = append(d.closers, func() { _ = d.client.Close() })
	d.n.say("payments workload: its identity from the Workload API is %s", d.client.ID)
	return nil
}

// startLedger starts the ledger with its enrolled SVID and waits until its
// revocation feed reaches jitd (until then it refuses every grant).
func (d *demo) startLedger(ctx context.Context) error {
	idDir := d.identity(ledgerID)
	svid, err := x509svid.Load(filepath.Join(idDir, jitd.EnrollCert), filepath.Join(idDir, jitd.EnrollKey))
	if err != nil {
		return err
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(trustDomain), filepath.Join(idDir, jitd.EnrollBundle))
	if err != nil {
		return err
	}
	d.ledger, err = ledgerserver.Start(ctx, ledgerserver.Config{
		Listen: "127.0.0.1:0", SVIDSource: svid, BundleSource: bundle,
		Issuer: d.jitd.Addr(), Logger: d.logger.With("component", "ledger"),
	})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, d.ledger.Stop)
	return waitFor(ctx, 20*time.Second, "the ledger's revocation feed to reach jitd", func() bool {
		return !d.ledger.Feed().LastContact().IsZero()
	})
}

// close stops everything, last started first.
func (d *demo) close() {
	if d.refund != nil {
		_ = d.refund.Close()
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// identity is the directory jitd enroll wrote id's SVID to.
func (d *demo) identity(id string) string {
	return filepath.Join(d.dir, "identities", filepath.Base(id))
}

// jitctl runs jitctl as the person with this ID, shows the command and its
// output, and returns the output; a non-zero exit status is an error
// unless wantFail, when success is the error.
func (d *demo) jitctl(ctx context.Context, as string, wantFail bool, args ...string) (string, error) {
	prompt := ""
	if as != "" {
		prompt = filepath.Base(as)
	}
	d.n.command(prompt, "jitctl "+shellJoin(args))
	full := append([]string{"--server", d.jitd.Addr(), "--identity", d.identity(as)}, args...)
	if as == "" {
		full = args // offline commands
	}
	var out bytes.Buffer
	code := jitctl.Main(ctx, full, &out, &out)
	d.n.output(out.String())
	switch {
	case wantFail && code == 0:
		return out.String(), fmt.Errorf("jitctl %s succeeded, want a failure", args[0])
	case !wantFail && code != 0:
		return out.String(), fmt.Errorf("jitctl %s: exit status %d", args[0], code)
	}
	return out.String(), nil
}

// shellJoin quotes args as a shell would need them.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}

// waitFor polls cond until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// errUnexpected marks a step whose outcome differed from the narration.
var errUnexpected = errors.New("not as narrated")
