package issuer_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestTwoGroupApprovalIssues(t *testing.T) {
	e := newEnv(t)
	r := e.create(dev, refund(t, dev))
	if r.State != issuer.StatePending || len(r.Missing) != 2 {
		t.Fatalf("new request: state %s, missing %v; want PENDING needing two factors", r.State, r.Missing)
	}
	res, err := e.review(alice, r.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Request.State != issuer.StatePending || len(res.Request.Missing) != 1 || res.Request.Missing[0].Groups[0] != "security" {
		t.Fatalf("after sre approval: %s missing %v, want PENDING missing security", res.Request.State, res.Request.Missing)
	}
	res, err = e.review(bob, r.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Request
	if got.State != issuer.StateIssued || len(got.CertChain) == 0 {
		t.Fatalf("after both approvals: %s with %d certs, want ISSUED with a certificate", got.State, len(got.CertChain))
	}
	cert, err := x509.ParseCertificate(got.CertChain[0])
	if err != nil {
		t.Fatal(err)
	}
	g, err := grant.FromCertificate(cert)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != r.ID || len(g.Approvers) != 2 || g.Approvers[0] != alice || g.Approvers[1] != bob {
		t.Errorf("grant %+v: want ID %s approved by alice then bob", g, r.ID)
	}
	if cert.URIs[0].String() != dev.String() || !cert.NotAfter.Equal(got.NotAfter) {
		t.Errorf("certificate for %v until %v; want %v until %v", cert.URIs[0], cert.NotAfter, dev, got.NotAfter)
	}
	want := []audit.Action{audit.ActionRequestCreated, audit.ActionRequestApproved, audit.ActionRequestApproved, audit.ActionGrantIssued}
	if got := e.entries(); !slices.Equal(got, want) {
		t.Errorf("audit log %v, want %v", got, want)
	}
	// The issued grant expires when its time is up.
	e.clock.Add(11 * time.Minute)
	if err := e.is.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.get(r.ID).State; s != issuer.StateExpired {
		t.Errorf("after the TTL: %s, want EXPIRED", s)
	}
}

func TestReviewRules(t *testing.T) {
	tests := []struct {
		name      string
		requester string
		reviews   []string // "alice+" approves, "bob-" denies
		wantErr   error
		wantMsg   string
		state     issuer.State
		counted   bool
	}{
		{name: "self-approval refused", requester: "carol", reviews: []string{"carol+"}, wantErr: issuer.ErrPermission, wantMsg: "own request", state: issuer.StatePending},
		{name: "outsider refused", requester: "dev", reviews: []string{"mallory+"}, wantErr: issuer.ErrPermission, wantMsg: "mallory", state: issuer.StatePending},
		{name: "duplicate approval counted once", requester: "dev", reviews: []string{"alice+", "alice+"}, state: issuer.StatePending, counted: false},
		{name: "one person counts toward one factor", requester: "dev", reviews: []string{"carol+"}, state: issuer.StatePending, counted: true},
		{name: "carol and alice cover both factors", requester: "dev", reviews: []string{"carol+", "alice+"}, state: issuer.StateIssued, counted: true},
		{name: "deny ends it", requester: "dev", reviews: []string{"alice+", "bob-"}, state: issuer.StateDenied, counted: true},
		{name: "deny by an outsider is refused", requester: "dev", reviews: []string{"mallory-"}, wantErr: issuer.ErrPermission, state: issuer.StatePending},
	}
	people := map[string]spiffeid.ID{"dev": dev, "alice": alice, "bob": bob, "carol": carol, "mallory": mallory}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			who := people[tt.requester]
			r := e.create(who, refund(t, who))
			var res *issuer.ReviewResult
			var err error
			for _, rv := range tt.reviews {
				name, approve := rv[:len(rv)-1], rv[len(rv)-1] == '+'
				res, err = e.review(people[name], r.ID, approve)
			}
			if tt.wantErr != nil {
				if !isErr(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if res.Counted != tt.counted {
				t.Errorf("counted %v (note %q), want %v", res.Counted, res.Note, tt.counted)
			}
			if s := e.get(r.ID).State; s != tt.state {
				t.Errorf("state %s, want %s", s, tt.state)
			}
		})
	}
}

func TestTimeoutScheduleExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pending := e.create(dev, refund(t, dev))
	in := refund(t, dev)
	in.Start = e.clock.Now().Add(20 * time.Minute)
	scheduled := e.create(dev, in)
	for _, who := range []spiffeid.ID{alice, bob} {
		if _, err := e.review(who, scheduled.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.get(scheduled.ID).State; s != issuer.StateApproved {
		t.Fatalf("scheduled request after approval: %s, want APPROVED until its start", s)
	}
	e.clock.Add(21 * time.Minute)
	if err := e.is.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.get(scheduled.ID)
	if got.State != issuer.StateIssued || !got.NotAfter.Equal(in.Start.Add(in.TTL)) {
		t.Errorf("scheduled request after its start: %s until %v, want ISSUED until %v", got.State, got.NotAfter, in.Start.Add(in.TTL))
	}
	if s := e.get(pending.ID).State; s != issuer.StatePending {
		t.Errorf("unreviewed request before its deadline: %s", s)
	}
	e.clock.Add(10 * time.Minute) // past the 30m pending timeout and the grant's end
	if err := e.is.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.get(pending.ID).State; s != issuer.StateTimedOut {
		t.Errorf("unreviewed request after its deadline: %s, want TIMED_OUT", s)
	}
	if s := e.get(scheduled.ID).State; s != issuer.StateExpired {
		t.Errorf("grant after its end: %s, want EXPIRED", s)
	}
	acts := e.entries()
	for _, a := range []audit.Action{audit.ActionRequestTimedOut, audit.ActionGrantExpired, audit.ActionGrantIssued} {
		if !slices.Contains(acts, a) {
			t.Errorf("audit log lacks %s: %v", a, acts)
		}
	}
}

func TestAutoApproveBreakGlassDryRun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	read := issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: 5 * time.Minute}
	r := e.create(dev, read)
	if r.State != issuer.StateIssued {
		t.Errorf("auto-approved request: %s, want ISSUED", r.State)
	}
	f, err := e.is.Fetch(ctx, dev, r.ID, true)
	if err != nil || f.Key == nil || len(f.CertChain) == 0 {
		t.Fatalf("Fetch of a grant made without CSR: %v (key %v)", err, f)
	}
	if _, err := e.is.Fetch(ctx, alice, r.ID, true); !isErr(err, issuer.ErrPermission) {
		t.Errorf("Fetch by another: %v, want ErrPermission", err)
	}

	bg := issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.LedgerAdmin/*"}}, TTL: 10 * time.Minute, Reason: "ledger down", BreakGlass: true}
	r = e.create(dev, bg)
	if r.State != issuer.StateIssued || !r.BreakGlass || !r.NeedsReview {
		t.Errorf("break-glass request: %s breakglass=%v needs_review=%v, want ISSUED, flagged", r.State, r.BreakGlass, r.NeedsReview)
	}
	if !slices.Contains(e.entries(), audit.ActionBreakGlass) {
		t.Error("break-glass not audited as such")
	}
	bg.Scopes = []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}}
	bg.Reason = "INC-1"
	if _, _, err := e.is.Create(ctx, dev, bg); err == nil {
		t.Error("break-glass allowed on a rule without break_glass")
	}

	size := e.log.Size()
	in := refund(t, dev)
	in.DryRun = true
	got, d, err := e.is.Create(ctx, dev, in)
	if err != nil || got != nil || d.Outcome != policy.NeedsApproval || d.Rule != "refund" || len(d.Reasons) == 0 {
		t.Fatalf("dry run: %v, %v, %+v", got, err, d)
	}
	if e.log.Size() != size {
		t.Error("dry run wrote to the audit log")
	}
	list, _, err := e.is.List(ctx, dev, issuer.ListInput{States: []issuer.State{issuer.StatePending}})
	if err != nil || len(list) != 0 {
		t.Errorf("dry run stored a request: %v, %v", list, err)
	}
}

func TestConcurrentApprovals(t *testing.T) {
	e := newEnv(t)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.create(dev, refund(t, dev)).ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for _, id := range ids {
		// alice, bob and carol race: whichever pair completes the
		// approval, the grant must be issued exactly once.
		for _, who := range []spiffeid.ID{alice, bob, carol} {
			wg.Go(func() {
				if _, err := e.review(who, id, true); err != nil && !isErr(err, issuer.ErrState) {
					errs <- fmt.Errorf("%s on %s: %w", who, id, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	issued := 0
	for _, a := range e.entries() {
		if a == audit.ActionGrantIssued {
			issued++
		}
	}
	if issued != n {
		t.Errorf("%d grant.issued entries for %d requests, want exactly one each", issued, n)
	}
	for _, id := range ids {
		if s := e.get(id).State; s != issuer.StateIssued {
			t.Errorf("%s: %s, want ISSUED", id, s)
		}
	}
}

func TestRestartKeepsState(t *testing.T) {
	e := newEnv(t)
	a := e.create(dev, refund(t, dev))
	b := e.create(dev, refund(t, dev))
	e.review(alice, b.ID, true)
	e.review(bob, b.ID, true)
	before := []*issuer.Request{e.get(a.ID), e.get(b.ID)}
	size := e.log.Size()
	e.close()
	e.open()
	for _, r := range before {
		got := e.get(r.ID)
		if got.State != r.State || got.Version != r.Version || len(got.Reviews) != len(r.Reviews) {
			t.Errorf("%s after restart: %s v%d, want %s v%d", r.ID, got.State, got.Version, r.State, r.Version)
		}
	}
	if e.log.Size() < size {
		t.Errorf("audit log shrank across restart: %d -> %d", size, e.log.Size())
	}
	// The restarted issuer goes on where it left off.
	if _, err := e.review(alice, a.ID, true); err != nil {
		t.Fatal(err)
	}
}

func TestCancelRevokePermissions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.create(dev, refund(t, dev))
	if _, err := e.is.Cancel(ctx, alice, r.ID); !isErr(err, issuer.ErrPermission) {
		t.Errorf("cancel by another: %v", err)
	}
	if got, err := e.is.Cancel(ctx, dev, r.ID); err != nil || got.State != issuer.StateCanceled {
		t.Fatalf("cancel by requester: %v %v", got, err)
	}
	if _, err := e.review(alice, r.ID, true); !isErr(err, issuer.ErrState) {
		t.Errorf("review of a canceled request: %v, want ErrState", err)
	}
	issue := func() string {
		r := e.create(dev, refund(t, dev))
		e.review(alice, r.ID, true)
		e.review(bob, r.ID, true)
		return r.ID
	}
	tests := []struct {
		name string
		who  spiffeid.ID
		err  error
	}{
		{"holder", dev, nil},
		{"approver of the rule", alice, nil},
		{"revoke_any", bob, nil},
		{"outsider", mallory, issuer.ErrPermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := issue()
			got, err := e.is.Revoke(ctx, tt.who, id, "done early", 0)
			if !isErr(err, tt.err) && !(err == nil && tt.err == nil) {
				t.Fatalf("revoke: %v, want %v", err, tt.err)
			}
			if tt.err == nil && (got.Request.State != issuer.StateRevoked || got.Following != 0) {
				t.Errorf("state %s, %d following; want REVOKED and none following", got.Request.State, got.Following)
			}
		})
	}
}

func TestPolicyChangeFailsClosed(t *testing.T) {
	e := newEnv(t)
	r := e.create(dev, refund(t, dev))
	p, err := policy.Parse([]byte(strings.Replace(testPolicy, "name: refund", "name: refund-v2", 1)), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies.Swap(p)
	if _, err := e.review(alice, r.ID, true); err == nil {
		t.Fatal("a review under a policy that no longer has the request's rule succeeded")
	}
	if s := e.get(r.ID).State; s != issuer.StatePending {
		t.Errorf("state %s, want PENDING", s)
	}
}

// TestScheduledStartWithoutSweep shows that a scheduled grant is issued at
// its start by the issuer's own timer, not only by the sweeper's next pass.
func TestScheduledStartWithoutSweep(t *testing.T) {
	e := newEnv(t)
	// The timer runs on real time; the issuer's clock must agree.
	e.is = newRealClockIssuer(t, e)
	in := refund(t, dev)
	in.Start = time.Now().Add(300 * time.Millisecond)
	r := e.create(dev, in)
	for _, who := range []spiffeid.ID{alice, bob} {
		if _, err := e.review(who, r.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.get(r.ID).State != issuer.StateIssued {
		if time.Now().After(deadline) {
			t.Fatalf("scheduled grant still %s without a sweep", e.get(r.ID).State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFetch covers every answer of Fetch for a CSR-based grant: issued
// grants come from the in-memory index, every refusal from the store, and
// the index follows revocation, expiry and a restart.
func TestFetch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	issue := func() *issuer.Request {
		r := e.create(dev, refund(t, dev))
		e.review(alice, r.ID, true)
		e.review(bob, r.ID, true)
		return e.get(r.ID)
	}
	issued := issue()
	revoked := issue()
	if _, err := e.is.Revoke(ctx, dev, revoked.ID, "done", 0); err != nil {
		t.Fatal(err)
	}
	pending := e.create(dev, refund(t, dev))
	noCSR := e.create(dev, issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: 5 * time.Minute})

	tests := []struct {
		name string
		who  spiffeid.ID
		id   string
		err  error
	}{
		{"issued, by its requester", dev, issued.ID, nil},
		{"issued, by another", alice, issued.ID, issuer.ErrPermission},
		{"revoked", dev, revoked.ID, issuer.ErrState},
		{"pending", dev, pending.ID, issuer.ErrState},
		{"made without a CSR", dev, noCSR.ID, issuer.ErrState},
		{"unknown", dev, "req-unknown", issuer.ErrNotFound},
	}
	check := func(t *testing.T, who spiffeid.ID, id string, want error) {
		t.Helper()
		f, err := e.is.Fetch(ctx, who, id, false)
		switch {
		case want != nil && !isErr(err, want):
			t.Fatalf("Fetch: %v, want %v", err, want)
		case want == nil && err != nil:
			t.Fatalf("Fetch: %v", err)
		case want == nil && (f.Request.ID != id || len(f.CertChain) == 0 || f.Key != nil):
			t.Fatalf("Fetch: request %s, %d certs, key %v", f.Request.ID, len(f.CertChain), f.Key != nil)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.who, tt.id, tt.err) })
	}
	fetched := 0
	for _, a := range e.entries() {
		if a == audit.ActionGrantFetched {
			fetched++
		}
	}
	if fetched != 1 {
		t.Errorf("%d grant.fetched entries, want 1 (refusals are not fetches)", fetched)
	}

	t.Run("after a restart", func(t *testing.T) {
		e.close()
		e.open()
		check(t, dev, issued.ID, nil)
		check(t, dev, revoked.ID, issuer.ErrState)
	})
	t.Run("past its end, before the sweeper", func(t *testing.T) {
		e.clock.Add(11 * time.Minute)
		check(t, dev, issued.ID, issuer.ErrState)
	})
}
