package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
)

// extendPolicy is testPolicy with extend: blocks: a balance grant is
// extended at once up to 10 minutes in all; a refund grant's extension
// needs the rule's approvers, at most twice.
var extendPolicy = strings.Replace(strings.Replace(testPolicy,
	"    pending_timeout: 30m\n", "    pending_timeout: 30m\n    extend: {max_total: 15m, max_count: 2}\n", 1),
	"    auto_approve: 'ttl <= duration(\"5m\")'\n", "    auto_approve: 'ttl <= duration(\"5m\")'\n    extend: {max_total: 10m, auto_approve: 'extension.ttl <= duration(\"5m\")'}\n", 1)

// TestExtendWithJitctl extends grants through the real jitctl: at once
// under auto_approve (and fetch then writes the later certificate for the
// same key), past max_total refused (exit 3), and with --wait until the
// rule's approvers approve (exit 0) or deny (exit 3) it; the holder cannot
// approve their own extension.
func TestExtendWithJitctl(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.writePolicy(extendPolicy)
	e.restart()

	t.Run("auto-approved, then fetched", func(t *testing.T) {
		id, dir := e.request(dev, "--scope", mBalance, "--ttl", "5m")
		before := e.wantState(dev, id, pb.State_STATE_ISSUED)
		out := e.ok(dev, "extend", id, "--ttl", "3m", "--reason", "still reconciling").stdout
		if !strings.Contains(out, "extension 1 (+3m0s): APPROVED") {
			t.Errorf("extend printed %q", out)
		}
		r := e.wantState(dev, id, pb.State_STATE_ISSUED)
		if got, want := r.GetNotAfter().AsTime(), before.GetNotAfter().AsTime().Add(3*time.Minute); !got.Equal(want) {
			t.Errorf("not_after %s, want %s", got, want)
		}
		if r.GetSerial() == before.GetSerial() {
			t.Error("the extended grant kept its certificate")
		}
		e.ok(dev, "fetch", id, "--out", dir)
		insp := e.ok(dev, "inspect", filepath.Join(dir, "grant.pem")).stdout
		for _, want := range []string{"grant:       " + id, "serial:      " + r.GetSerial()} {
			if !strings.Contains(insp, want) {
				t.Errorf("inspect of the fetched certificate lacks %q:\n%s", want, insp)
			}
		}
		e.fails(dev, []string{"extend", id, "--ttl", "5m"}, "jitctl: PermissionDenied: ", "total duration at 10m")
	})

	t.Run("with --wait, approved by the rule's approvers", func(t *testing.T) {
		id, _ := e.refund("INC-7")
		e.ok(alice, "approve", id)
		e.ok(bob, "approve", id)
		w := e.background(context.Background(), dev, "extend", id, "--ttl", "2m", "--reason", "INC-7: more", "--wait")
		eventually(t, 30*time.Second, "the pending extension", func() bool {
			xs := e.show(dev, id).GetExtensions()
			return len(xs) == 1 && xs[0].GetState() == "PENDING"
		})
		e.fails(dev, []string{"approve", id}, "jitctl: PermissionDenied: ")
		e.ok(alice, "approve", id)
		e.ok(bob, "approve", id)
		if res := w.wait(t); res.code != 0 || !strings.Contains(res.stdout, "APPROVED") {
			t.Errorf("extend --wait: %s", res)
		}
	})

	t.Run("with --wait, denied", func(t *testing.T) {
		id, _ := e.refund("INC-8")
		e.ok(alice, "approve", id)
		e.ok(bob, "approve", id)
		issued := e.wantState(dev, id, pb.State_STATE_ISSUED)
		w := e.background(context.Background(), dev, "extend", id, "--ttl", "2m", "--wait")
		eventually(t, 30*time.Second, "the pending extension", func() bool {
			return len(e.show(dev, id).GetExtensions()) == 1
		})
		e.ok(bob, "deny", id, "--comment", "wrap it up")
		res := w.wait(t)
		if res.code != jitctl.ExitDenied || !strings.Contains(res.stderr, "extension 1 was DENIED") {
			t.Errorf("extend --wait after a denial: %s", res)
		}
		if r := e.wantState(dev, id, pb.State_STATE_ISSUED); !r.GetNotAfter().AsTime().Equal(issued.GetNotAfter().AsTime()) {
			t.Errorf("denied extension moved the end: %s -> %s", issued.GetNotAfter().AsTime(), r.GetNotAfter().AsTime())
		}
	})
}
