package e2e

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/policy"
)

// TestPolicyReloadRemovals: a reload (here on SIGHUP) that would drop
// permissions and rules is refused and audited unless the file carries a
// matching checksum line; with one it applies.
func TestPolicyReloadRemovals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	start := e.srv.AuditLog().Size()
	e.writePolicy("version: 1\n") // the first line of a file caught mid-write
	ev := e.srv.ReloadPolicy()
	if ev.OK || !errors.Is(ev.Err, policy.ErrRemoval) || len(ev.Removed) == 0 {
		t.Fatalf("reload of the first line: %+v", ev)
	}
	var removed string
	for seq := start; seq < e.srv.AuditLog().Size(); seq++ {
		if en, err := e.srv.AuditLog().Entry(seq); err == nil && en.Action == audit.ActionPolicyLoaded && en.Details["ok"] == "false" {
			removed = en.Details["removed"]
		}
	}
	if removed != fmt.Sprint(len(ev.Removed)) {
		t.Errorf("audited removed=%q, want %d", removed, len(ev.Removed))
	}
	// The old policy still decides.
	e.refund("INC-1: still pending")
	// With a checksum, the operator means it.
	e.writePolicy(string(policy.WithChecksum([]byte("version: 1\n"))))
	if ev := e.srv.ReloadPolicy(); !ev.OK || len(ev.Removed) == 0 {
		t.Fatalf("checksummed reload: %+v", ev)
	}
	e.fails(dev, []string{"request", "--scope", mRefund + "@accounts/*", "--ttl", "10m", "--reason", "INC-2: denied now", "--dry-run"})
}
