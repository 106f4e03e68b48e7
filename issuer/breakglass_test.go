package issuer_test

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// breakGlassPolicy is testPolicy with the admin rule's after-the-fact
// review needing two people, one from sre and one from security, and the
// issuer's own ID following revocations.
var breakGlassPolicy = strings.Replace(strings.Replace(testPolicy, `  watch_revocations: ["spiffe://example.org/service/ledger"]
`, `  watch_revocations: ["spiffe://example.org/service/ledger", "spiffe://example.org/jitd"]
`, 1), `    reason: {required: true}
    approvals:
      - {count: 1, from: [security]}
    break_glass: true`, `    reason: {required: true}
    approvals:
      - {count: 1, from: [sre]}
      - {count: 1, from: [security]}
    break_glass: true`, 1)

// newBreakGlassEnv is newEnv under breakGlassPolicy.
func newBreakGlassEnv(t *testing.T) *env {
	t.Helper()
	if breakGlassPolicy == testPolicy {
		t.Fatal("breakGlassPolicy did not change the admin rule")
	}
	e := newEnv(t)
	p, err := policy.Parse([]byte(breakGlassPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies.Swap(p)
	return e
}

// breakGlass makes who's break-glass request on the admin API, issued at
// once and flagged.
func (e *env) breakGlass(who spiffeid.ID) *issuer.Request {
	e.t.Helper()
	r := e.create(who, issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.LedgerAdmin/*"}}, TTL: 10 * time.Minute,
		Reason: "ledger down", BreakGlass: true, CSR: csrFor(e.t, who)})
	if r.State != issuer.StateIssued || !r.BreakGlass || !r.NeedsReview || len(r.Missing) != 2 {
		e.t.Fatalf("break-glass request: %s break_glass=%v needs_review=%v missing=%v", r.State, r.BreakGlass, r.NeedsReview, r.Missing)
	}
	return r
}

// TestBreakGlassReview walks the after-the-fact review of a break-glass
// grant under the rules of ordinary review.
func TestBreakGlassReview(t *testing.T) {
	type step struct {
		who     spiffeid.ID
		approve bool
		revoke  bool
		err     error  // nil: the review succeeds
		msg     string // in the error
		counted bool
	}
	tests := []struct {
		name      string
		requester spiffeid.ID
		before    string // "expire" or "revoke" the grant first
		steps     []step
		flagged   bool   // NeedsReview at the end
		verdict   string // ReviewVerdict at the end
		state     issuer.State
		missing   string // the groups of what is still missing, "" for none
	}{
		{name: "self-review refused", requester: alice, steps: []step{{who: alice, approve: true, err: issuer.ErrPermission, msg: "own request"}},
			flagged: true, state: issuer.StateIssued, missing: "sre security"},
		{name: "outsider refused", requester: dev, steps: []step{{who: mallory, approve: true, err: issuer.ErrPermission, msg: "not in any approver group"}},
			flagged: true, state: issuer.StateIssued, missing: "sre security"},
		{name: "one factor is not enough", requester: dev, steps: []step{{who: alice, approve: true, counted: true}},
			flagged: true, state: issuer.StateIssued, missing: "security"},
		{name: "one person counts once, toward one factor", requester: dev,
			steps:   []step{{who: carol, approve: true, counted: true}, {who: carol, approve: true, counted: false}},
			flagged: true, state: issuer.StateIssued, missing: "security"},
		{name: "both factors clear the flag", requester: dev,
			steps:   []step{{who: alice, approve: true, counted: true}, {who: bob, approve: true, counted: true}},
			verdict: issuer.VerdictApproved, state: issuer.StateIssued},
		{name: "an eligible denial concludes the review", requester: dev,
			steps:   []step{{who: alice, approve: true, counted: true}, {who: bob, approve: false, counted: true}},
			verdict: issuer.VerdictDenied, state: issuer.StateIssued},
		{name: "deny with revoke ends the grant", requester: dev,
			steps:   []step{{who: bob, approve: false, revoke: true, counted: true}},
			verdict: issuer.VerdictDenied, state: issuer.StateRevoked},
		{name: "approve with revoke is refused", requester: dev,
			steps:   []step{{who: bob, approve: true, revoke: true, err: issuer.ErrInvalid, msg: "only a denial revokes"}},
			flagged: true, state: issuer.StateIssued, missing: "sre security"},
		{name: "a concluded review takes no more reviews", requester: dev,
			steps: []step{{who: alice, approve: true, counted: true}, {who: bob, approve: true, counted: true},
				{who: carol, approve: false, err: issuer.ErrState, msg: "has concluded (approved)"}},
			verdict: issuer.VerdictApproved, state: issuer.StateIssued},
		{name: "an expired grant is still reviewed", requester: dev, before: "expire",
			steps:   []step{{who: alice, approve: true, counted: true}, {who: bob, approve: true, counted: true}},
			verdict: issuer.VerdictApproved, state: issuer.StateExpired},
		{name: "a revoked grant is still reviewed; revoke has nothing left to do", requester: dev, before: "revoke",
			steps:   []step{{who: bob, approve: false, revoke: true, counted: true}},
			verdict: issuer.VerdictDenied, state: issuer.StateRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBreakGlassEnv(t)
			ctx := context.Background()
			r := e.breakGlass(tt.requester)
			switch tt.before {
			case "expire":
				e.clock.Add(11 * time.Minute)
				if err := e.is.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
			case "revoke":
				if _, err := e.is.Revoke(ctx, tt.requester, r.ID, "done", 0); err != nil {
					t.Fatal(err)
				}
			}
			for i, st := range tt.steps {
				res, err := e.is.ReviewWith(ctx, st.who, r.ID, issuer.ReviewInput{Approve: st.approve, Comment: "step", Revoke: st.revoke})
				if st.err != nil {
					if !isErr(err, st.err) || !strings.Contains(err.Error(), st.msg) {
						t.Fatalf("step %d: error %v, want %v containing %q", i, err, st.err, st.msg)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if res.Counted != st.counted {
					t.Errorf("step %d: counted %v (note %q), want %v", i, res.Counted, res.Note, st.counted)
				}
				if wantRevoked := st.revoke && tt.before == ""; res.Revoked != wantRevoked {
					t.Errorf("step %d: revoked %v, want %v", i, res.Revoked, wantRevoked)
				}
			}
			got := e.get(r.ID)
			var missing []string
			for _, f := range got.Missing {
				missing = append(missing, f.Groups...)
			}
			if got.NeedsReview != tt.flagged || got.ReviewVerdict != tt.verdict || got.State != tt.state || strings.Join(missing, " ") != tt.missing {
				t.Errorf("after the reviews: needs_review=%v verdict=%q state=%s missing=%v; want %v %q %s %q",
					got.NeedsReview, got.ReviewVerdict, got.State, missing, tt.flagged, tt.verdict, tt.state, tt.missing)
			}
		})
	}
}

// TestOrdinaryIssuedRequestIsNotReviewable: only break-glass grants are
// reviewed after the fact.
func TestOrdinaryIssuedRequestIsNotReviewable(t *testing.T) {
	e := newEnv(t)
	r := e.create(dev, refund(t, dev))
	e.review(alice, r.ID, true)
	e.review(bob, r.ID, true)
	if _, err := e.review(carol, r.ID, true); !isErr(err, issuer.ErrState) || !strings.Contains(err.Error(), "is ISSUED, not PENDING") {
		t.Errorf("review of an issued ordinary grant: %v, want ErrState", err)
	}
}

// TestBreakGlassReviewAuditAndNotify checks what each review writes: the
// review with its comment, then the conclusion as an entry of its own
// (and a deny with revoke the revocation), and what OnChange reports.
func TestBreakGlassReviewAuditAndNotify(t *testing.T) {
	e := newBreakGlassEnv(t)
	var mu sync.Mutex
	var changes []string // "action state needs_review"
	is, err := issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(),
		OnChange: func(r *issuer.Request, a audit.Action) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, string(a)+" "+string(r.State)+" "+map[bool]string{true: "flagged", false: r.ReviewVerdict}[r.NeedsReview])
		}})
	if err != nil {
		t.Fatal(err)
	}
	e.is = is
	ctx := context.Background()
	approved := e.breakGlass(dev)
	e.clock.Add(time.Minute)
	denied := e.breakGlass(dev)
	start := e.log.Size()
	e.clock.Add(90 * time.Minute) // long past the grants' end: reviews come late
	if err := e.is.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	changes = nil
	mu.Unlock()
	for _, rv := range []struct {
		who spiffeid.ID
		id  string
		in  issuer.ReviewInput
	}{
		{alice, approved.ID, issuer.ReviewInput{Approve: true, Comment: "INC-7 was real"}},
		{bob, approved.ID, issuer.ReviewInput{Approve: true, Comment: "checked the runbook"}},
		{bob, denied.ID, issuer.ReviewInput{Comment: "no incident", Revoke: true}},
	} {
		if _, err := e.is.ReviewWith(ctx, rv.who, rv.id, rv.in); err != nil {
			t.Fatal(err)
		}
	}
	type entry struct {
		action  audit.Action
		actor   spiffeid.ID
		subject string
		details map[string]string // each must be present with this value
	}
	want := []entry{
		{audit.ActionGrantExpired, jitdID, approved.ID, nil},
		{audit.ActionGrantExpired, jitdID, denied.ID, nil},
		{audit.ActionRequestApproved, alice, approved.ID, map[string]string{"comment": "INC-7 was real", "break_glass": "true", "outcome": "still needs review: needs 1 approver from [security]"}},
		{audit.ActionRequestApproved, bob, approved.ID, map[string]string{"comment": "checked the runbook", "outcome": "review concluded: approved"}},
		{audit.ActionGrantReviewed, jitdID, approved.ID, map[string]string{"verdict": "approved", "approvers": alice.String() + "," + bob.String(), "review_took": "1h31m0s"}},
		{audit.ActionRequestDenied, bob, denied.ID, map[string]string{"comment": "no incident", "outcome": "review concluded: denied"}},
		{audit.ActionGrantReviewed, jitdID, denied.ID, map[string]string{"verdict": "denied", "denied_by": bob.String()}},
	}
	var got []entry
	for i := start; i < e.log.Size(); i++ {
		en, err := e.log.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		if en.Action == audit.ActionCheckpoint {
			continue
		}
		got = append(got, entry{action: en.Action, actor: spiffeid.RequireFromString(en.Actor), subject: en.Subject, details: en.Details})
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries after the break-glass requests, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.action != w.action || g.actor != w.actor || g.subject != w.subject {
			t.Errorf("entry %d: %s by %s on %s, want %s by %s on %s", i, g.action, g.actor, g.subject, w.action, w.actor, w.subject)
		}
		for k, v := range w.details {
			if g.details[k] != v {
				t.Errorf("entry %d (%s): %s=%q, want %q", i, g.action, k, g.details[k], v)
			}
		}
	}
	// The expired grant had nothing to revoke; the revoked one stays denied.
	if r := e.get(denied.ID); r.State != issuer.StateExpired || r.ReviewVerdict != issuer.VerdictDenied {
		t.Errorf("denied expired grant: %s %q", r.State, r.ReviewVerdict)
	}
	mu.Lock()
	defer mu.Unlock()
	wantChanges := []string{
		"request.approved EXPIRED flagged", "request.approved EXPIRED flagged", "grant.reviewed EXPIRED approved",
		"request.denied EXPIRED flagged", "grant.reviewed EXPIRED denied",
	}
	if !slices.Equal(changes, wantChanges) {
		t.Errorf("OnChange saw %q, want %q", changes, wantChanges)
	}
}

// TestBreakGlassDenyRevokes: a denial with revoke ends a live grant in the
// same commit, and the grant joins the revocations verifiers follow.
func TestBreakGlassDenyRevokes(t *testing.T) {
	e := newBreakGlassEnv(t)
	ctx := context.Background()
	r := e.breakGlass(dev)
	start := e.log.Size()
	res, err := e.is.ReviewWith(ctx, bob, r.ID, issuer.ReviewInput{Comment: "no incident", Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Request
	if !res.Revoked || got.State != issuer.StateRevoked || got.EndedBy != bob.String() || got.EndReason != "no incident" || got.ReviewVerdict != issuer.VerdictDenied || got.Version != r.Version+3 {
		t.Errorf("deny --revoke: revoked=%v %s by %s (%q) verdict %q v%d; want REVOKED by bob, denied, v%d",
			res.Revoked, got.State, got.EndedBy, got.EndReason, got.ReviewVerdict, got.Version, r.Version+3)
	}
	var acts []audit.Action
	for i := start; i < e.log.Size(); i++ {
		en, _ := e.log.Entry(i)
		acts = append(acts, en.Action)
	}
	if want := []audit.Action{audit.ActionRequestDenied, audit.ActionGrantReviewed, audit.ActionGrantRevoked}; !slices.Equal(acts, want) {
		t.Errorf("entries %v, want %v", acts, want)
	}
	errStop := errors.New("stop")
	revoked := false
	err = e.is.WatchRevocations(ctx, jitdID, "", nil, func(_ bool, rs []issuer.Revocation) error {
		revoked = slices.ContainsFunc(rs, func(rv issuer.Revocation) bool { return rv.GrantID == r.ID })
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("WatchRevocations: %v", err)
	}
	if !revoked {
		t.Error("the revocation feed's snapshot lacks the grant")
	}
}

// TestBreakGlassListing: the rule's approvers find the grant in their
// review list until they review it; needs_review lists what is
// outstanding to whoever may see it.
func TestBreakGlassListing(t *testing.T) {
	e := newBreakGlassEnv(t)
	ctx := context.Background()
	bg := e.breakGlass(dev)
	e.clock.Add(time.Second) // IDs made in one millisecond sort at random
	pending := e.create(dev, refund(t, dev))
	ids := func(who spiffeid.ID, in issuer.ListInput) []string {
		t.Helper()
		rs, _, err := e.is.List(ctx, who, in)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	mine := issuer.ListInput{AwaitingMyReview: true}
	outstanding := issuer.ListInput{NeedsReview: true}
	check := func(stage string, tests []struct {
		who  spiffeid.ID
		in   issuer.ListInput
		want []string
	}) {
		t.Helper()
		for _, tt := range tests {
			if got := ids(tt.who, tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("%s: %s lists %v (awaiting %v, needs_review %v), want %v", stage, tt.who, got, tt.in.AwaitingMyReview, tt.in.NeedsReview, tt.want)
			}
		}
	}
	check("before any review", []struct {
		who  spiffeid.ID
		in   issuer.ListInput
		want []string
	}{
		{alice, mine, []string{pending.ID, bg.ID}},
		{bob, mine, []string{pending.ID, bg.ID}},
		{dev, mine, nil},
		{mallory, mine, nil},
		{dev, outstanding, []string{bg.ID}},   // the requester
		{bob, outstanding, []string{bg.ID}},   // an approver, and list_all
		{alice, outstanding, []string{bg.ID}}, // an approver of the rule
		{mallory, outstanding, nil},
		{bob, issuer.ListInput{NeedsReview: true, States: []issuer.State{issuer.StatePending}}, nil},
	})
	if _, err := e.review(alice, bg.ID, true); err != nil {
		t.Fatal(err)
	}
	check("after alice's review", []struct {
		who  spiffeid.ID
		in   issuer.ListInput
		want []string
	}{
		{alice, mine, []string{pending.ID}},
		{bob, mine, []string{pending.ID, bg.ID}},
		{bob, outstanding, []string{bg.ID}},
	})
	if _, err := e.review(bob, bg.ID, true); err != nil {
		t.Fatal(err)
	}
	check("after the review concluded", []struct {
		who  spiffeid.ID
		in   issuer.ListInput
		want []string
	}{
		{carol, mine, []string{pending.ID}},
		{bob, outstanding, nil},
	})
}

// TestBreakGlassMetrics: the gauges count the grants awaiting review and
// age the oldest by the issuer's clock, across a restart.
func TestBreakGlassMetrics(t *testing.T) {
	e := newBreakGlassEnv(t)
	gauges := func(is *issuer.Issuer) (count, oldest float64) {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(is.Collector())
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, mf := range mfs {
			switch mf.GetName() {
			case "jitgrant_issuer_breakglass_unreviewed":
				count, found = mf.GetMetric()[0].GetGauge().GetValue(), found+1
			case "jitgrant_issuer_breakglass_oldest_unreviewed_seconds":
				oldest, found = mf.GetMetric()[0].GetGauge().GetValue(), found+1
			}
		}
		if found != 2 {
			t.Fatalf("%d of the two break-glass gauges exported", found)
		}
		return count, oldest
	}
	want := func(stage string, is *issuer.Issuer, count, oldest float64) {
		t.Helper()
		if c, o := gauges(is); c != count || o != oldest {
			t.Errorf("%s: unreviewed %v, oldest %vs; want %v, %vs", stage, c, o, count, oldest)
		}
	}
	want("none", e.is, 0, 0)
	first := e.breakGlass(dev)
	e.clock.Add(10 * time.Minute)
	second := e.breakGlass(carol)
	e.clock.Add(5 * time.Minute) // the first has expired by now
	if err := e.is.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("two flagged", e.is, 2, 900)
	e.close()
	e.open()
	want("after a restart", e.is, 2, 900)
	for _, who := range []spiffeid.ID{alice, bob} {
		if _, err := e.review(who, first.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	want("the first reviewed", e.is, 1, 300)
	if _, err := e.review(bob, second.ID, false); err != nil {
		t.Fatal(err)
	}
	want("both reviewed", e.is, 0, 0)
	e.close()
	e.open()
	want("both reviewed, after a restart", e.is, 0, 0)
}

// TestBreakGlassCertificateNamesNoApprovers: a certificate minted for a
// break-glass grant after its review (a grant made without a CSR is minted
// at each Workload API fetch) does not claim its reviewers approved it.
func TestBreakGlassCertificateNamesNoApprovers(t *testing.T) {
	e := newBreakGlassEnv(t)
	ctx := context.Background()
	r := e.create(dev, issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.LedgerAdmin/*"}}, TTL: 10 * time.Minute, Reason: "ledger down", BreakGlass: true})
	for _, who := range []spiffeid.ID{alice, bob} {
		if _, err := e.review(who, r.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	f, err := e.is.Fetch(ctx, dev, r.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(f.CertChain[0])
	if err != nil {
		t.Fatal(err)
	}
	g, err := grant.FromCertificate(cert)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != r.ID || len(g.Approvers) != 0 {
		t.Errorf("grant %s names approvers %v, want none", g.ID, g.Approvers)
	}
}
