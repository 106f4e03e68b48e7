package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestPendingTimeout: nobody reviews a request within the rule's
// pending_timeout (30m); the sweep times it out and request --wait says so.
func TestPendingTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	reviewed, _ := e.refund("INC-1")
	e.ok(alice, "approve", reviewed) // half-reviewed times out too

	w := e.background(context.Background(), dev, "request", "--wait", "--out", filepath.Join(t.TempDir(), "g"),
		"--scope", mRefund+"@accounts/1", "--ttl", "10m", "--reason", "INC-2")
	id := w.firstLine(t)
	e.wantState(dev, id, pb.State_STATE_PENDING)

	e.clock.Add(31 * time.Minute)
	if err := e.srv.Issuer().Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	res := w.wait(t)
	if res.code != jitctl.ExitTimedOut || !strings.Contains(res.stderr, "jitctl: request "+id+" TIMED_OUT: nobody approved it by its review deadline") {
		t.Errorf("request --wait on a request that timed out: %s", res)
	}
	for _, r := range []string{id, reviewed} {
		if out := e.ok(dev, "show", r).stdout; field(out, "state") != "TIMED_OUT" {
			t.Errorf("show %s after the pending timeout:\n%s", r, out)
		}
	}
	e.fails(bob, []string{"approve", reviewed}, "jitctl: FailedPrecondition: ", "TIMED_OUT")
}

// TestRestart: stopping jitd and starting it again on the same data
// directory keeps every request in its state, and the log goes on.
func TestRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	pending, _ := e.refund("INC-1")
	halfway, _ := e.refund("INC-2")
	e.ok(alice, "approve", halfway)
	issued, _ := e.refund("INC-3")
	e.ok(alice, "approve", issued)
	e.ok(bob, "approve", issued)
	denied, _ := e.refund("INC-4")
	e.ok(bob, "deny", denied)
	canceled, _ := e.refund("INC-5")
	e.ok(dev, "cancel", canceled)
	auto, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")

	before := e.listAll()
	want := map[string]pb.State{
		pending: pb.State_STATE_PENDING, halfway: pb.State_STATE_PENDING, issued: pb.State_STATE_ISSUED,
		denied: pb.State_STATE_DENIED, canceled: pb.State_STATE_CANCELED, auto: pb.State_STATE_ISSUED,
	}
	if !sameStates(before, want) {
		t.Fatalf("before the restart: %v, want %v", before, want)
	}
	halfBefore := e.show(dev, halfway)

	e.restart()

	if after := e.listAll(); !sameStates(after, want) {
		t.Errorf("after the restart: %v, want %v", after, want)
	}
	halfAfter := e.show(dev, halfway)
	if len(halfAfter.GetReviews()) != 1 || halfAfter.GetReviews()[0].GetApprover() != personID(alice) ||
		!halfAfter.GetCreateTime().AsTime().Equal(halfBefore.GetCreateTime().AsTime()) || len(halfAfter.GetMissing()) != 1 {
		t.Errorf("half-approved request after the restart: %v\nbefore: %v", halfAfter, halfBefore)
	}
	// The lifecycle goes on where it was.
	if out := e.ok(bob, "approve", halfway).stdout; !strings.Contains(out, halfway+" is ISSUED") {
		t.Errorf("approval after the restart printed %q", out)
	}
	e.exportAudit() // verifies across the restart
}

func sameStates(got, want map[string]pb.State) bool {
	if len(got) != len(want) {
		return false
	}
	for id, s := range want {
		if got[id] != s {
			return false
		}
	}
	return true
}

// TestConcurrentApprovals: 50 requests, each approved by alice and bob at
// the same time as all the others; each is issued exactly once.
func TestConcurrentApprovals(t *testing.T) {
	t.Parallel()
	const n = 50
	e := newEnv(t, nil)
	ctx := context.Background()
	devAPI, aliceAPI, bobAPI := e.client(dev), e.client(alice), e.client(bob)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{mustURL(personID(dev))}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Go(func() {
			resp, err := devAPI.CreateRequest(ctx, &pb.CreateRequestRequest{
				Scopes: []*pb.Scope{{Method: mRefund, Resources: []string{"accounts/*"}}},
				Ttl:    durationpb.New(10 * time.Minute), Reason: "INC-100", Csr: csr,
			})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = resp.GetRequest().GetId()
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("CreateRequest: %v", err)
	default:
	}

	for _, id := range ids {
		for _, api := range []pb.IssuerClient{aliceAPI, bobAPI} {
			wg.Go(func() {
				resp, err := api.ApproveRequest(ctx, &pb.ReviewRequest{Id: id})
				if err != nil {
					errs <- err
				} else if !resp.GetCounted() {
					errs <- fmt.Errorf("approval of %s not counted: %s", id, resp.GetNote())
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("approve: %v", err)
	}

	states := e.listAll()
	for _, id := range ids {
		if states[id] != pb.State_STATE_ISSUED {
			t.Errorf("request %s is %v, want ISSUED", id, states[id])
		}
	}
	issued := map[string]int{}
	total := 0
	for _, en := range e.exportAudit().Entries {
		if en.Action == audit.ActionGrantIssued {
			issued[en.Subject]++
			total++
		}
	}
	if total != n {
		t.Errorf("%d grant.issued audit entries, want %d", total, n)
	}
	for _, id := range ids {
		if issued[id] != 1 {
			t.Errorf("request %s issued %d times", id, issued[id])
		}
	}
}

// TestPolicyReload: a broken policy file is refused and the old policy stays
// in force.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *jitd.ServeConfig) { c.PolicyPoll, c.PolicySettle = 20*time.Millisecond, time.Second })
	start := e.srv.AuditLog().Size()

	broken := strings.Replace(testPolicy, "max_ttl: 30m", "max_ttl: forever", 1)
	e.writePolicy(broken)
	// jitd's watcher is not exposed; its poll reloads the file once it has
	// settled (on jitd's clock) and audits the failed load.
	var why string
	eventually(t, 30*time.Second, "a policy.loaded entry with ok=false", func() bool {
		e.clock.Add(100 * time.Millisecond)
		for seq := start; seq < e.srv.AuditLog().Size(); seq++ {
			en, err := e.srv.AuditLog().Entry(seq)
			if err == nil && en.Action == audit.ActionPolicyLoaded && en.Details["ok"] == "false" {
				why = en.Details["error"]
				return true
			}
		}
		return false
	})
	if !strings.Contains(why, "max_ttl") {
		t.Errorf("failed load says %q, want it to name max_ttl", why)
	}
	// jitctl policy check agrees, offline.
	r := e.jitctl(dev, "policy", "check", e.dir.Policy())
	if r.code != 1 || !strings.Contains(r.stdout, "rules[1].max_ttl") {
		t.Errorf("policy check of the broken file: %s", r)
	}

	// The old policy still decides: short balance reads are automatic.
	r = e.ok(dev, "request", "--dry-run", "--scope", mBalance, "--ttl", "5m")
	if !strings.Contains(r.stdout, "outcome: auto_approved\n") || !strings.Contains(r.stdout, "rule: ledger-balance\n") {
		t.Errorf("dry run after a failed reload:\n%s", r.stdout)
	}
	id, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")
	e.wantState(dev, id, pb.State_STATE_ISSUED)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
