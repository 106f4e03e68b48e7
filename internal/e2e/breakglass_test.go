package e2e

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/notify"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
)

// TestBreakGlassStory walks the README's break-glass story with jitctl
// against jitd: glass is broken and the grant works at once; the rule's
// approver finds it in --mine-to-review and --needs-review, and the gauges
// count it, across a restart; the review after the fact (the grant has
// expired by then) clears the flag, audited and notified; a second grant is
// denied and revoked in one command.
func TestBreakGlassStory(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var e *env
	h := &hook{t: t, secret: secret, attempts: map[string]int{}, now: func() time.Time { return e.clock.Now() }}
	hookSrv := httptest.NewServer(h)
	defer hookSrv.Close()
	e = newEnv(t, func(c *jitd.ServeConfig) {
		c.MetricsListen = "127.0.0.1:0"
		c.WebhookBackoff = time.Millisecond
		c.Webhooks = []notify.Endpoint{{Name: "security", URL: hookSrv.URL, SecretFile: secretFile}}
	})
	ledger := e.startLedger()
	gauges := func(stage string, count, oldest float64) {
		t.Helper()
		body := scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics")
		c, okc := metric(body, "jitgrant_issuer_breakglass_unreviewed", "")
		o, oko := metric(body, "jitgrant_issuer_breakglass_oldest_unreviewed_seconds", "")
		if !okc || !oko || c != count || o != oldest {
			t.Errorf("%s: unreviewed %v (found %v), oldest %vs (found %v); want %v, %vs", stage, c, okc, o, oko, count, oldest)
		}
	}
	gauges("before", 0, 0)

	// dev breaks glass: the grant is issued at once and works.
	id, dir := e.request(dev, "--break-glass", "--scope", mTransfer+"@accounts/9", "--ttl", "5m", "--reason", "INC-7: ledger down")
	r := e.wantState(dev, id, pb.State_STATE_ISSUED)
	if !r.GetBreakGlass() || !r.GetNeedsReview() || r.GetReviewVerdict() != "" {
		t.Fatalf("break-glass request: %v", r)
	}
	if got, err := callLedger(e.dialLedger(ledger, dir), mTransfer, "accounts/9"); err != nil || got != id {
		t.Fatalf("Transfer with the break-glass grant: %q, %v", got, err)
	}

	// The rule's approver (security: bob) finds it waiting; alice (sre)
	// is no approver of this rule, and mallory sees nothing.
	for _, args := range [][]string{{"list", "--mine-to-review"}, {"list", "--needs-review"}} {
		if out := e.ok(bob, args...).stdout; !strings.Contains(out, id+"  ISSUED!") {
			t.Errorf("bob: jitctl %s lacks %s:\n%s", strings.Join(args, " "), id, out)
		}
	}
	if out := e.ok(alice, "list", "--mine-to-review").stdout; strings.Contains(out, id) {
		t.Errorf("alice's review list shows %s:\n%s", id, out)
	}
	if res := e.ok(mallory, "list", "--needs-review"); res.stdout != "" || res.stderr != "no requests\n" {
		t.Errorf("mallory: list --needs-review: %s", res)
	}
	gauges("flagged", 1, 0)

	// What is outstanding survives a restart. (The clock moves less than
	// the backdate of jitd's new certificate, which the client checks at
	// the real time.)
	e.clock.Add(5 * time.Second)
	e.restart()
	gauges("after a restart", 1, 5)
	if out := e.ok(bob, "list", "--needs-review").stdout; !strings.Contains(out, id+"  ISSUED!") {
		t.Errorf("list --needs-review after a restart:\n%s", out)
	}

	// The review comes after the grant's end, which does not excuse it.
	e.clock.Add(6 * time.Minute)
	if err := e.srv.Issuer().Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	gauges("six minutes later", 1, 365)
	if out := e.ok(bob, "list", "--needs-review").stdout; !strings.Contains(out, id+"  EXPIRED!") {
		t.Errorf("list --needs-review after expiry:\n%s", out)
	}
	e.fails(dev, []string{"approve", id}, "jitctl: PermissionDenied: ", "no one approves their own request")
	e.fails(alice, []string{"approve", id}, "jitctl: PermissionDenied: ", "not in any approver group")
	out := e.ok(bob, "approve", id, "--comment", "INC-7 confirmed").stdout
	if want := "counted\n" + id + " is EXPIRED (break-glass: reviewed, approved)\n"; out != want {
		t.Errorf("approve printed %q, want %q", out, want)
	}
	if res := e.ok(bob, "list", "--needs-review"); res.stdout != "" {
		t.Errorf("list --needs-review after the review: %s", res)
	}
	shown := e.ok(dev, "show", id).stdout
	if field(shown, "break-glass") != "yes (reviewed: approved)" || !strings.HasSuffix(field(shown, "review"), ": INC-7 confirmed") {
		t.Errorf("show after the review:\n%s", shown)
	}
	e.fails(bob, []string{"deny", id}, "jitctl: FailedPrecondition: ", "has concluded (approved)")
	gauges("reviewed", 0, 0)

	// A second break-glass grant is denied and revoked in one command.
	id2, _ := e.request(dev, "--break-glass", "--scope", mTransfer+"@accounts/9", "--ttl", "5m", "--reason", "INC-8")
	out = e.ok(bob, "deny", id2, "--revoke", "--comment", "not an incident").stdout
	if want := "counted\n" + id2 + " is REVOKED by " + personID(bob) + ": not an incident (break-glass: reviewed, denied)\n" +
		"revoked; acknowledged by 0 of 0 verifiers following revocations\n"; out != want {
		t.Errorf("deny --revoke printed %q, want %q", out, want)
	}
	if res := e.jitctl(bob, "approve", id2, "--revoke"); res.code == 0 || !strings.Contains(res.stderr, "unknown flag: --revoke") {
		t.Errorf("approve --revoke: %s", res) // only a denial revokes
	}
	gauges("both reviewed", 0, 0)

	// Every review is audited with its comment, each conclusion apart.
	got := map[string][]string{}
	for _, en := range e.exportAudit().Entries {
		if en.Subject != id && en.Subject != id2 {
			continue
		}
		a := string(en.Action)
		switch {
		case en.Details["comment"] != "":
			a += ":" + en.Details["comment"]
		case en.Details["verdict"] != "":
			a += ":" + en.Details["verdict"]
		}
		got[en.Subject] = append(got[en.Subject], a)
	}
	want := map[string][]string{
		id:  {"request.break_glass", "grant.issued", "grant.fetched", "grant.expired", "request.approved:INC-7 confirmed", "grant.reviewed:approved"},
		id2: {"request.break_glass", "grant.issued", "grant.fetched", "request.denied:not an incident", "grant.reviewed:denied", "grant.revoked"},
	}
	for _, k := range []string{id, id2} {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("audit entries of %s: %q, want %q", k, got[k], want[k])
		}
	}

	// The security webhook heard each end and each conclusion once.
	wantKinds := map[string][]notify.Kind{
		id:  {notify.KindBreakGlass, notify.KindIssued, notify.KindExpired, notify.KindReviewed},
		id2: {notify.KindBreakGlass, notify.KindIssued, notify.KindReviewed, notify.KindRevoked},
	}
	for _, k := range []string{id, id2} {
		eventually(t, 20*time.Second, "the webhook events of "+k, func() bool { return slices.Equal(h.kinds(k), wantKinds[k]) })
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.events {
		if ev.Kind == notify.KindReviewed && ev.RequestID == id2 && (ev.Verdict != "denied" || ev.EndedBy != personID(bob) || ev.EndReason != "not an incident") {
			t.Errorf("reviewed event of %s: %+v", id2, ev)
		}
		if ev.Kind == notify.KindReviewed && ev.RequestID == id && (ev.Verdict != "approved" || !slices.Equal(ev.Approvers, []string{personID(bob)})) {
			t.Errorf("reviewed event of %s: %+v", id, ev)
		}
	}
}
