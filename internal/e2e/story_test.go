package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStory is the story of the issue: a refund needs one SRE and one
// security engineer; the grant jitctl fetches opens exactly Refund on the
// protected ledger, and expires with its TTL.
func TestStory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ledger := e.startLedger()

	// dev asks; policy says who must approve.
	id, dir := e.refund("INC-42")
	r := e.wantState(dev, id, pb.State_STATE_PENDING)
	if r.GetRule() != "ledger-refund" || len(r.GetMissing()) != 2 || !r.GetHasCsr() {
		t.Fatalf("new request: %v", r)
	}
	if fi, err := os.Stat(filepath.Join(dir, "grant.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("grant.key: %v, %v", fi, err)
	}
	// The approvers see it waiting for them.
	if out := e.ok(alice, "list", "--mine-to-review").stdout; !strings.Contains(out, id) || !strings.Contains(out, "PENDING") {
		t.Errorf("alice's review list lacks %s:\n%s", id, out)
	}

	// One approval is not enough: show says what is missing.
	out := e.ok(alice, "approve", id, "--comment", "refund looks right").stdout
	if want := "counted\n" + id + " is PENDING: waiting for 1 approver from [security]\n"; out != want {
		t.Errorf("approve by alice printed %q, want %q", out, want)
	}
	e.wantState(dev, id, pb.State_STATE_PENDING)
	shown := e.ok(dev, "show", id).stdout
	if field(shown, "missing") != "1 approver from [security]" || !strings.HasPrefix(field(shown, "review"), personID(alice)+" approved at ") ||
		!strings.HasSuffix(field(shown, "review"), ": refund looks right") {
		t.Errorf("show after one approval:\n%s", shown)
	}
	if out := e.ok(alice, "list", "--mine-to-review").stdout; strings.Contains(out, id) {
		t.Errorf("alice still has %s to review:\n%s", id, out)
	}

	// The second factor issues it.
	out = e.ok(bob, "approve", id).stdout
	if !strings.HasPrefix(out, "counted\n"+id+" is ISSUED: valid until ") {
		t.Errorf("approve by bob printed %q", out)
	}
	r = e.wantState(dev, id, pb.State_STATE_ISSUED)
	if r.GetSerial() == "" || r.GetNotAfter() == nil {
		t.Fatalf("issued request: %v", r)
	}

	// fetch writes the chain next to the key made by request.
	out = e.ok(dev, "fetch", id, "--out", dir).stdout
	if !strings.Contains(out, "issued "+id) || !strings.Contains(out, filepath.Join(dir, "grant.pem")) {
		t.Errorf("fetch printed %q", out)
	}
	insp := e.ok(dev, "inspect", filepath.Join(dir, "grant.pem")).stdout
	for _, want := range []string{"grant:       " + id, "scope:       /bank.v1.Ledger/Refund @ accounts/*",
		"approvers:   spiffe://example.org/person/alice, spiffe://example.org/person/bob", "serial:      " + r.GetSerial()} {
		if !strings.Contains(insp, want) {
			t.Errorf("inspect lacks %q:\n%s", want, insp)
		}
	}

	// The protected ledger accepts the grant for Refund on accounts/1 and
	// nothing else.
	cc := e.dialLedger(ledger, dir)
	if got, err := callLedger(cc, mRefund, "accounts/1"); err != nil || got != id {
		t.Fatalf("Refund accounts/1 with the grant: %q, %v", got, err)
	}
	_, err := callLedger(cc, mTransfer, "accounts/1")
	wantDenied(t, "Transfer with a Refund grant", err, "jitgrant: no grant for "+mTransfer)
	_, err = callLedger(cc, mRefund, "cards/1")
	wantDenied(t, "Refund on cards/1 with an accounts/* grant", err, "jitgrant: resource not granted for "+mRefund)

	// request --wait: waits through both approvals, then fetches.
	waitDir := filepath.Join(t.TempDir(), "waited")
	w := e.background(context.Background(), dev, "request", "--wait", "--out", waitDir, "--scope", mRefund+"@accounts/2",
		"--scope", mRefund+"@accounts/3", "--ttl", "5m", "--reason", "INC-43")
	id2 := w.firstLine(t)
	e.ok(alice, "approve", id2)
	e.ok(bob, "approve", id2)
	res := w.wait(t)
	if res.code != 0 || !strings.Contains(res.stdout, "issued "+id2) || !strings.Contains(res.stderr, "waiting: "+id2+" is PENDING") {
		t.Fatalf("request --wait: %s", res)
	}
	insp = e.ok(dev, "-o", "json", "inspect", filepath.Join(waitDir, "grant.pem")).stdout
	var ij struct {
		Grant struct {
			ID     string `json:"id"`
			Scopes []struct {
				Method    string   `json:"method"`
				Resources []string `json:"resources"`
			} `json:"scopes"`
		} `json:"grant"`
	}
	if err := json.Unmarshal([]byte(insp), &ij); err != nil || ij.Grant.ID != id2 {
		t.Fatalf("inspect -o json of the waited grant: %v\n%s", err, insp)
	}
	// Two --scope flags on one method make one scope with both resources.
	if sc := ij.Grant.Scopes; len(sc) != 1 || sc[0].Method != mRefund || strings.Join(sc[0].Resources, ",") != "accounts/2,accounts/3" {
		t.Errorf("waited grant scopes: %+v", sc)
	}
	cc2 := e.dialLedger(ledger, waitDir)
	if got, err := callLedger(cc2, mRefund, "accounts/3"); err != nil || got != id2 {
		t.Errorf("Refund accounts/3 with the waited grant: %q, %v", got, err)
	}

	// Past the TTL, the sweep expires the grant, and the ledger refuses it
	// on the connection it already has.
	e.clock.Add(11 * time.Minute)
	if err := e.srv.Issuer().Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	shown = e.ok(dev, "show", id).stdout
	if field(shown, "state") != "EXPIRED" {
		t.Errorf("show after the TTL:\n%s", shown)
	}
	e.wantState(dev, id2, pb.State_STATE_EXPIRED)
	_, err = callLedger(cc, mRefund, "accounts/1")
	wantDenied(t, "Refund with an expired grant", err, "jitgrant: grant expired")
	e.fails(dev, []string{"fetch", id, "--out", dir}, "jitctl: FailedPrecondition: ", "not ISSUED")

	// Every step is in the audit log, which verifies.
	ex := e.exportAudit()
	seen := map[string]int{}
	for _, en := range ex.Entries {
		if en.Subject == id {
			seen[string(en.Action)]++
		}
	}
	for _, a := range []string{"request.created", "request.approved", "grant.issued", "grant.fetched", "grant.expired"} {
		if seen[a] == 0 {
			t.Errorf("audit log has no %s entry for %s: %v", a, id, seen)
		}
	}
	if seen["request.created"] != 1 || seen["request.approved"] != 2 || seen["grant.issued"] != 1 {
		t.Errorf("audit entries for %s: %v", id, seen)
	}
}

// wantDenied checks that err is the verifier's PermissionDenied with
// message msg: the code alone does not say which check refused.
func wantDenied(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != msg {
		t.Errorf("%s: %v, want PermissionDenied %q", what, err, msg)
	}
}
