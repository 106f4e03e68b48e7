package jitctl

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

// run runs jitctl in-process and returns its output and exit status.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestParseScopes(t *testing.T) {
	const refund, balance = "/bank.v1.Ledger/Refund", "/bank.v1.Ledger/GetBalance"
	tests := []struct {
		name    string
		in      []string
		want    []*pb.Scope
		wantErr string // substring of the usage error; "" for success
	}{
		{name: "method only", in: []string{refund}, want: []*pb.Scope{{Method: refund}}},
		{name: "service wildcard", in: []string{"/bank.v1.Ledger/*"}, want: []*pb.Scope{{Method: "/bank.v1.Ledger/*"}}},
		{name: "with resource", in: []string{refund + "@accounts/*"}, want: []*pb.Scope{{Method: refund, Resources: []string{"accounts/*"}}}},
		{name: "resource with @ inside", in: []string{refund + "@a/b@c"}, want: []*pb.Scope{{Method: refund, Resources: []string{"a/b@c"}}}},
		{
			name: "same method merges resources in order",
			in:   []string{refund + "@accounts/1", balance, refund + "@accounts/2"},
			want: []*pb.Scope{{Method: refund, Resources: []string{"accounts/1", "accounts/2"}}, {Method: balance}},
		},
		{
			name: "exact repeats are dropped",
			in:   []string{refund + "@accounts/1", refund + "@accounts/1", balance, balance},
			want: []*pb.Scope{{Method: refund, Resources: []string{"accounts/1"}}, {Method: balance}},
		},
		{name: "none", in: nil, wantErr: "--scope: at least one"},
		{name: "no leading slash", in: []string{"bank.v1.Ledger/Refund"}, wantErr: `--scope "bank.v1.Ledger/Refund": method`},
		{name: "no method", in: []string{"/bank.v1.Ledger"}, wantErr: "no / between service and method"},
		{name: "empty resource", in: []string{refund + "@"}, wantErr: `--scope "/bank.v1.Ledger/Refund@": after @: empty resource pattern`},
		{name: "partial wildcard", in: []string{refund + "@acc*"}, wantErr: "must be a whole segment"},
		{name: "empty segment", in: []string{refund + "@accounts//1"}, wantErr: "empty segment"},
		{name: "any then specific", in: []string{refund, refund + "@accounts/1"}, wantErr: "also given without @resource"},
		{name: "specific then any", in: []string{refund + "@accounts/1", refund}, wantErr: "also given with resources (accounts/1)"},
		{name: "bad method name", in: []string{"/bank.v1.Ledger/Re-fund"}, wantErr: "not an identifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScopes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseScopes(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if cli.ExitStatus(err) != 2 {
					t.Errorf("parseScopes(%q) error is not a usage error: %v", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseScopes(%q): %v", tt.in, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseScopes(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range got {
				if !proto.Equal(got[i], tt.want[i]) {
					t.Errorf("scope %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseScopesTooManyResources(t *testing.T) {
	var in []string
	for i := range 17 {
		in = append(in, "/a.B/C@r/"+string(rune('a'+i)))
	}
	if _, err := parseScopes(in); err == nil || !strings.Contains(err.Error(), "more than 16 resources") {
		t.Fatalf("parseScopes(17 resources) error = %v", err)
	}
}

func TestParseStart(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr bool
	}{
		{name: "relative minutes", in: "+10m", want: now.Add(10 * time.Minute)},
		{name: "relative compound", in: "+1h30m", want: now.Add(90 * time.Minute)},
		{name: "RFC 3339 UTC", in: "2026-03-04T06:00:00Z", want: time.Date(2026, 3, 4, 6, 0, 0, 0, time.UTC)},
		{name: "RFC 3339 offset", in: "2026-03-04T08:00:00+02:00", want: time.Date(2026, 3, 4, 6, 0, 0, 0, time.UTC)},
		{name: "relative zero", in: "+0s", wantErr: true},
		{name: "relative negative", in: "+-5m", wantErr: true},
		{name: "relative garbage", in: "+soon", wantErr: true},
		{name: "bare duration", in: "10m", wantErr: true},
		{name: "date only", in: "2026-03-04", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStart(tt.in, now)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStart(%q) = %v, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), "--start") || cli.ExitStatus(err) != 2 {
					t.Errorf("parseStart(%q) error %q: want a usage error naming --start", tt.in, err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("parseStart(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseStates(t *testing.T) {
	got, err := parseStates([]string{"pending", "TIMED-OUT", "STATE_ISSUED", "Denied", "timed_out"})
	if err != nil {
		t.Fatal(err)
	}
	want := []pb.State{pb.State_STATE_PENDING, pb.State_STATE_TIMED_OUT, pb.State_STATE_ISSUED, pb.State_STATE_DENIED, pb.State_STATE_TIMED_OUT}
	if len(got) != len(want) {
		t.Fatalf("parseStates = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("state %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"unspecified", "STATE_UNSPECIFIED", "bogus", ""} {
		if _, err := parseStates([]string{bad}); err == nil || cli.ExitStatus(err) != 2 || !strings.Contains(err.Error(), "--state") {
			t.Errorf("parseStates(%q) error = %v, want a usage error naming --state", bad, err)
		}
	}
}

// TestUsageErrors checks that bad command lines exit 2 with a message that
// names the flag or argument at fault, before any connection is made.
func TestUsageErrors(t *testing.T) {
	t.Setenv(EnvWorkloadAPI, "")
	t.Setenv(EnvServer, "")
	const scope = "--scope=/bank.v1.Ledger/Refund"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"list", "--bogus"}, "unknown flag: --bogus"},
		{"bad output", []string{"-o", "yaml", "list"}, "-o/--output"},
		{"bad timeout", []string{"--timeout", "0s", "list"}, "--timeout"},
		{"request without scope", []string{"request", "--reason", "x"}, `required flag(s) "scope"`},
		{"request bad scope", []string{"request", "--scope", "nope"}, `--scope "nope"`},
		{"request bad resource", []string{"request", "--scope", "/a.B/C@x*"}, `--scope "/a.B/C@x*"`},
		{"request scope conflict", []string{"request", scope, scope + "@accounts/1"}, "--scope"},
		{"request bad ttl", []string{"request", scope, "--ttl", "-1m"}, "--ttl"},
		{"request unparsable ttl", []string{"request", scope, "--ttl", "soon"}, `invalid argument "soon" for "--ttl"`},
		{"request bad start", []string{"request", scope, "--start", "tomorrow"}, `--start "tomorrow"`},
		{"request start and break-glass", []string{"request", scope, "--start", "+5m", "--break-glass"}, "--start and --break-glass"},
		{"request dry-run and wait", []string{"request", scope, "--dry-run", "--wait"}, "--dry-run and --wait"},
		{"request bad use limit", []string{"request", scope, "--use-limit", "-1"}, "--use-limit"},
		{"request positional", []string{"request", scope, "extra"}, `unknown command "extra"`},
		{"list bad state", []string{"list", "--state", "asleep"}, `--state "asleep"`},
		{"list bad requester", []string{"list", "--requester", "alice"}, `--requester "alice"`},
		{"list bad limit", []string{"list", "--limit", "501"}, "--limit 501"},
		{"watch bad state", []string{"watch", "--state", "x"}, `--state "x"`},
		{"show without id", []string{"show"}, "accepts 1 arg(s)"},
		{"approve two ids", []string{"approve", "a", "b"}, "accepts 1 arg(s)"},
		{"deny bad id", []string{"deny", "a b"}, `"a b" is not a request ID`},
		{"no identity", []string{"list"}, "no identity: give --identity DIR"},
		{"identity and cert", []string{"--identity", "d", "--cert", "c", "list"}, "exclude each other"},
		{"cert without key", []string{"--cert", "c", "list"}, "missing --key, --bundle"},
		{"audit alone", []string{"audit"}, "missing subcommand"},
		{"audit unknown", []string{"audit", "shred"}, `unknown command "shred"`},
		{"audit export bad range", []string{"audit", "export", "--from", "5", "--to", "2"}, "--to 2 is before --from 5"},
		{"audit verify without key", []string{"audit", "verify", "f"}, `required flag(s) "key"`},
		{"audit prove without seq", []string{"audit", "prove", "f", "--key", "k"}, `required flag(s) "seq"`},
		{"policy test one file", []string{"policy", "test", "f"}, "accepts 2 arg(s)"},
		{"policy bad cap", []string{"policy", "check", "f", "--max-ttl-cap", "48h"}, "--max-ttl-cap"},
		{"inspect nothing", []string{"inspect"}, "accepts 1 arg(s)"},
		{"completion bad shell", []string{"completion", "tcsh"}, `unknown command "tcsh"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.args...)
			if code != 2 {
				t.Fatalf("jitctl %q: exit %d, want 2\nstdout: %s\nstderr: %s", tt.args, code, stdout, stderr)
			}
			if !strings.HasPrefix(stderr, "jitctl: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("jitctl %q: stderr %q, want a line naming %q", tt.args, stderr, tt.want)
			}
			if !strings.Contains(stderr, "--help' for usage") {
				t.Errorf("jitctl %q: stderr %q has no usage hint", tt.args, stderr)
			}
		})
	}
}

func TestServerFromEnv(t *testing.T) {
	t.Setenv(EnvServer, "jitd.example:9443")
	cmd := NewCommand(new(bytes.Buffer), new(bytes.Buffer))
	cmd.SetArgs([]string{"list", "--identity", t.TempDir()})
	var seen string
	sub, _, err := cmd.Find([]string{"list"})
	if err != nil {
		t.Fatal(err)
	}
	sub.RunE = func(c *cobra.Command, _ []string) error {
		seen = c.Flag("server").Value.String()
		return nil
	}
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if seen != "jitd.example:9443" {
		t.Errorf("--server = %q, want it from %s", seen, EnvServer)
	}

	// An explicit flag wins over the environment.
	cmd = NewCommand(new(bytes.Buffer), new(bytes.Buffer))
	cmd.SetArgs([]string{"list", "--server", "other:1"})
	sub, _, _ = cmd.Find([]string{"list"})
	sub.RunE = func(c *cobra.Command, _ []string) error {
		seen = c.Flag("server").Value.String()
		return nil
	}
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if seen != "other:1" {
		t.Errorf("--server = %q, want the flag's other:1", seen)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		stdout, stderr, code := run(t, "completion", shell)
		if code != 0 || !strings.Contains(stdout, "jitctl") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, code, stderr, len(stdout))
		}
	}
	// Flag values complete from fixed lists.
	stdout, _, code := run(t, "__complete", "list", "--state", "p")
	if code != 0 || !strings.Contains(stdout, "pending") {
		t.Errorf("__complete list --state: exit %d, %q", code, stdout)
	}
}
