package e2e

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/internal/jitctl"
)

// TestExitStatuses runs jitctl against a real jitd for each exit status it
// documents, in table and in JSON output: a script tells "denied" from
// "unreachable" from "timed out" by the status alone, and with -o json
// reads the error as a JSON object, the last line on stderr.
func TestExitStatuses(t *testing.T) {
	e := newEnv(t, nil)
	pending, _ := e.refund("INC-31") // needs two approvals
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	tests := []struct {
		name   string
		who    string
		args   []string
		status int
		reason string
		code   string // gRPC code in the JSON error, if any
		stderr string // in the table output's error line
	}{
		{name: "ok", who: dev, args: []string{"show", pending}, status: jitctl.ExitOK},
		{name: "usage", who: dev, args: []string{"request", "--scope", "nope"}, status: jitctl.ExitUsage, reason: "usage",
			stderr: `--scope "nope"`},
		{name: "denied by the issuer", who: mallory, args: []string{"approve", pending}, status: jitctl.ExitDenied, reason: "denied",
			code: "PermissionDenied", stderr: "jitctl: PermissionDenied: "},
		{name: "denied by policy in a dry run", who: dev, args: []string{"request", "--dry-run", "--scope", mRefund + "@accounts/1", "--ttl", "10m", "--reason", "because"},
			status: jitctl.ExitDenied, reason: "denied"},
		{name: "timed out waiting", who: dev, args: []string{"request", "--wait", "--wait-timeout", "1ms", "--scope", mRefund + "@accounts/2", "--ttl", "10m", "--reason", "INC-32"},
			status: jitctl.ExitTimedOut, reason: "timed_out", stderr: "gave up after --wait-timeout 1ms; it is still"},
		{name: "issuer unreachable", who: dev, args: []string{"--server", closed, "list"}, status: jitctl.ExitUnreachable, reason: "unreachable",
			code: "Unavailable", stderr: "jitctl: Unavailable: "},
		{name: "not found", who: dev, args: []string{"show", "r00000000000000000000000000"}, status: jitctl.ExitNotFound, reason: "not_found",
			code: "NotFound", stderr: "jitctl: NotFound: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each request gets its own --out directory.
			args := func() []string {
				if tt.args[0] == "request" && !strings.Contains(strings.Join(tt.args, " "), "--dry-run") {
					return append(tt.args[:len(tt.args):len(tt.args)], "--out", filepath.Join(t.TempDir(), "g"))
				}
				return tt.args
			}
			r := e.jitctl(tt.who, args()...)
			if r.code != tt.status {
				t.Fatalf("want exit %d, got %s", tt.status, r)
			}
			if tt.stderr != "" && !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.stderr)
			}
			if tt.status == jitctl.ExitOK {
				return
			}
			// The same failure with -o json: the status, and one JSON
			// object on stderr.
			r = e.jitctl(tt.who, append([]string{"-o", "json"}, args()...)...)
			var got struct {
				Error      string `json:"error"`
				ExitStatus int    `json:"exit_status"`
				Reason     string `json:"reason"`
				Code       string `json:"code"`
			}
			if r.code != tt.status {
				t.Fatalf("-o json: want exit %d, got %s", tt.status, r)
			}
			// Progress ("waiting: ...") may come first; the error is the
			// last line.
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
				t.Fatalf("-o json: the last line of stderr is not a JSON object (%v): %q", err, r.stderr)
			}
			if got.ExitStatus != tt.status || got.Reason != tt.reason || got.Code != tt.code || got.Error == "" {
				t.Errorf("-o json: stderr %+v, want exit_status %d, reason %q, code %q and a message", got, tt.status, tt.reason, tt.code)
			}
		})
	}
}
