package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestReviewRules checks who may do what to a request, through jitctl, on
// one jitd whose clock never moves.
func TestReviewRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)

	t.Run("self-approval is refused", func(t *testing.T) {
		id, _ := e.refund("INC-1")
		e.fails(dev, []string{"approve", id}, "jitctl: PermissionDenied: ", "self-approval", "no one approves their own request")
		e.wantState(dev, id, pb.State_STATE_PENDING)
	})

	t.Run("an outsider is refused", func(t *testing.T) {
		id, _ := e.refund("INC-2")
		e.fails(mallory, []string{"approve", id}, "jitctl: PermissionDenied: ", "spiffe://example.org/person/mallory is not in any approver group")
		e.fails(mallory, []string{"deny", id}, "jitctl: PermissionDenied: ")
		e.fails(mallory, []string{"show", id}, "jitctl: PermissionDenied: ")
		e.fails(mallory, []string{"cancel", id}, "jitctl: PermissionDenied: ", "only the requester")
		if r := e.ok(mallory, "list"); strings.Contains(r.stdout, id) {
			t.Errorf("mallory's list shows %s:\n%s", id, r.stdout)
		}
		e.wantState(dev, id, pb.State_STATE_PENDING)
	})

	t.Run("an approver counts once", func(t *testing.T) {
		id, _ := e.refund("INC-3")
		if out := e.ok(alice, "approve", id).stdout; !strings.HasPrefix(out, "counted\n") {
			t.Fatalf("first approval printed %q", out)
		}
		out := e.ok(alice, "approve", id).stdout
		if !strings.HasPrefix(out, "not counted: spiffe://example.org/person/alice already reviewed request "+id) {
			t.Errorf("second approval printed %q", out)
		}
		var resp pb.ReviewResponse
		if err := protojson.Unmarshal([]byte(e.ok(alice, "-o", "json", "approve", id).stdout), &resp); err != nil || resp.GetCounted() || resp.GetNote() == "" {
			t.Errorf("approve -o json: counted=%v note=%q err=%v", resp.GetCounted(), resp.GetNote(), err)
		}
		r := e.wantState(dev, id, pb.State_STATE_PENDING)
		if len(r.GetReviews()) != 1 {
			t.Errorf("reviews: %v", r.GetReviews())
		}
	})

	t.Run("a denial ends the request and request --wait fails", func(t *testing.T) {
		w := e.background(context.Background(), dev, "request", "--wait", "--out", filepath.Join(t.TempDir(), "g"),
			"--scope", mRefund+"@accounts/5", "--ttl", "10m", "--reason", "INC-4")
		id := w.firstLine(t)
		out := e.ok(bob, "deny", id, "--comment", "not during the freeze").stdout
		if want := "counted\n" + id + " is DENIED by spiffe://example.org/person/bob: not during the freeze\n"; out != want {
			t.Errorf("deny printed %q, want %q", out, want)
		}
		res := w.wait(t)
		if res.code != jitctl.ExitDenied || !strings.Contains(res.stderr, "jitctl: request "+id+" was DENIED by spiffe://example.org/person/bob: not during the freeze") {
			t.Errorf("request --wait after a denial: %s", res)
		}
		e.wantState(dev, id, pb.State_STATE_DENIED)
		e.fails(alice, []string{"approve", id}, "jitctl: FailedPrecondition: ", "is DENIED, not PENDING")
	})

	t.Run("cancel", func(t *testing.T) {
		id, _ := e.refund("INC-5")
		if out := e.ok(dev, "cancel", id).stdout; out != id+" is CANCELED by spiffe://example.org/person/dev\n" {
			t.Errorf("cancel printed %q", out)
		}
		e.fails(dev, []string{"cancel", id}, "jitctl: FailedPrecondition: ")
	})

	t.Run("break-glass issues at once and is flagged", func(t *testing.T) {
		id, dir := e.request(dev, "--break-glass", "--scope", mTransfer+"@accounts/9", "--ttl", "5m", "--reason", "INC-7: ledger down")
		r := e.wantState(dev, id, pb.State_STATE_ISSUED)
		if !r.GetBreakGlass() || !r.GetNeedsReview() || r.GetRule() != "ledger-break-glass" {
			t.Errorf("break-glass request: %v", r)
		}
		if _, err := os.Stat(filepath.Join(dir, "grant.pem")); err != nil {
			t.Errorf("break-glass grant not fetched at once: %v", err)
		}
		if out := e.ok(bob, "list", "--state", "issued").stdout; !strings.Contains(out, id+"  ISSUED!") {
			t.Errorf("list does not flag the break-glass grant:\n%s", out)
		}
		// security may revoke it.
		out := e.ok(bob, "revoke", id, "--reason", "incident over").stdout
		if out != id+" is REVOKED by spiffe://example.org/person/bob: incident over (break-glass: needs review by 1 approver from [security])\n"+
			"acknowledged by 0 of 0 verifiers following revocations\n" {
			t.Errorf("revoke printed %q", out)
		}
		var flagged bool
		for _, en := range e.exportAudit().Entries {
			flagged = flagged || (en.Action == "request.break_glass" && en.Subject == id && en.Details["reason"] == "INC-7: ledger down")
		}
		if !flagged {
			t.Errorf("no request.break_glass audit entry for %s", id)
		}
	})

	t.Run("auto-approval", func(t *testing.T) {
		id, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")
		r := e.wantState(dev, id, pb.State_STATE_ISSUED)
		if len(r.GetReviews()) != 0 || r.GetRule() != "ledger-balance" {
			t.Errorf("auto-approved request: %v", r)
		}
	})

	t.Run("dry run stores nothing", func(t *testing.T) {
		before := e.listAll()
		size := e.srv.AuditLog().Size()
		r := e.ok(dev, "request", "--dry-run", "--scope", mRefund+"@accounts/1", "--ttl", "10m", "--reason", "INC-8")
		for _, want := range []string{"outcome: needs_approval\n", "rule: ledger-refund\n",
			"needs: 1 approver from [sre] and 1 from [security]\n", "pending_timeout: 30m\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("dry run lacks %q:\n%s", want, r.stdout)
			}
		}
		r = e.ok(dev, "-o", "json", "request", "--dry-run", "--scope", mBalance, "--ttl", "5m")
		var resp pb.CreateRequestResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.GetRequest() != nil ||
			resp.GetDecision().GetOutcome() != pb.Outcome_OUTCOME_AUTO_APPROVED {
			t.Errorf("dry run -o json: %v %v", &resp, err)
		}
		// A request policy would deny: the dry run says why and exits 3.
		r = e.jitctl(dev, "request", "--dry-run", "--scope", mRefund+"@accounts/1", "--ttl", "10m", "--reason", "because")
		if r.code != jitctl.ExitDenied || !strings.Contains(r.stdout, "outcome: denied\n") || !strings.Contains(r.stdout, "reason does not match pattern") {
			t.Errorf("denied dry run: %s", r)
		}
		after := e.listAll()
		if len(after) != len(before) {
			t.Errorf("list has %d requests after dry runs, %d before", len(after), len(before))
		}
		if got := e.srv.AuditLog().Size(); got != size {
			t.Errorf("audit log grew from %d to %d entries on dry runs", size, got)
		}
	})

	t.Run("a request policy denies is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "g")
		e.fails(dev, []string{"request", "--out", dir, "--scope", mRefund + "@accounts/1", "--ttl", "20m", "--reason", "INC-9"},
			"jitctl: InvalidArgument: ", "ttl 20m exceeds rule max_ttl 15m")
		e.fails(mallory, []string{"request", "--out", filepath.Join(t.TempDir(), "m"), "--scope", "/ops.v1.Admin/Restart", "--ttl", "5m"},
			"jitctl: PermissionDenied: ", "no policy rule allows")
	})

	t.Run("watch streams changes", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := e.background(ctx, alice, "-o", "json", "watch", "--mine-to-review")
		id, _ := e.refund("INC-10")
		eventually(t, 30*time.Second, "the watch to show "+id, func() bool { return strings.Contains(w.out.String(), id) })
		cancel()
		res := w.wait(t)
		if res.code != 0 {
			t.Fatalf("watch after interrupt: %s", res)
		}
		for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
			var ev pb.RequestEvent
			if err := protojson.Unmarshal([]byte(line), &ev); err != nil || ev.GetRequest().GetState() != pb.State_STATE_PENDING {
				t.Errorf("watch line %q: %v", line, err)
			}
		}
	})

	t.Run("completion offers request IDs", func(t *testing.T) {
		id, _ := e.refund("INC-11")
		var out, errOut bytes.Buffer
		code := jitctl.Main(context.Background(), []string{"__complete", "--server", e.srv.Addr(), "--identity", e.ids[alice], "approve", ""}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), id+"\tPENDING ") {
			t.Errorf("__complete approve: exit %d\n%s%s", code, out.String(), errOut.String())
		}
	})

	t.Run("audit export needs the permission", func(t *testing.T) {
		ex := e.exportAudit()
		if len(ex.Entries) == 0 {
			t.Fatal("empty export")
		}
		e.fails(dev, []string{"audit", "export", "--out", filepath.Join(t.TempDir(), "x")}, "jitctl: PermissionDenied: ", "export_audit")
		e.fails(bob, []string{"audit", "export"}, "jitctl: PermissionDenied: ")
		// A proof of one entry, offline, from the auditor's export.
		file := filepath.Join(t.TempDir(), "audit.jsonl")
		e.ok(auditor, "audit", "export", "--out", file)
		r := e.ok(auditor, "-o", "json", "audit", "prove", file, "--seq", "3", "--key", e.dir.AuditPublicKey())
		var p struct {
			Seq   uint64   `json:"seq"`
			Proof []string `json:"proof"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Seq != 3 || len(p.Proof) == 0 {
			t.Errorf("audit prove: %v %s", err, r.stdout)
		}
	})
}
