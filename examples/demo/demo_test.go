package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo as go run would, and checks that it fails loudly,
// naming the step, when the system does not behave as narrated.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo waits for a grant to expire")
	}
	tests := []struct {
		name     string
		policy   func(string) string
		wantStep string // "" for success
	}{
		{name: "as narrated", policy: func(p string) string { return p }},
		{
			name: "refunds auto-approved",
			policy: func(p string) string {
				return strings.Replace(p, "      - {count: 1, from: [security]}\n", "      - {count: 1, from: [security]}\n    auto_approve: 'true'\n", 1)
			},
			wantStep: "step 2 (A refund request waits for two approvals)",
		},
		{
			name: "balance checks need approval",
			policy: func(p string) string {
				return strings.Replace(p, "    auto_approve: 'ttl <= duration(\"5m\")'\n", "", 1)
			},
			wantStep: "step 1 (A short read-only balance check",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy := tc.policy(string(samplePolicy))
			if tc.wantStep != "" && policy == string(samplePolicy) {
				t.Fatal("the test's policy edit no longer applies to policy.yaml")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out, logs bytes.Buffer
			err := run(ctx, options{out: &out, logOut: &logs, policy: []byte(policy)})
			switch {
			case tc.wantStep == "" && err != nil:
				t.Fatalf("demo failed: %v\n%s\n%s", err, out.String(), logs.String())
			case tc.wantStep == "":
				if n := strings.Count(out.String(), "✔ as expected"); n != len(steps()) {
					t.Errorf("%d steps passed, want %d:\n%s", n, len(steps()), out.String())
				}
				if !strings.Contains(out.String(), "Every step behaved as narrated.") {
					t.Errorf("no closing line:\n%s", out.String())
				}
				if strings.Contains(out.String(), "\x1b[") {
					t.Error("colour codes in output that is not a terminal")
				}
			case err == nil:
				t.Fatalf("demo succeeded with a broken policy:\n%s", out.String())
			case !strings.Contains(err.Error(), tc.wantStep):
				t.Errorf("demo error %q, want it to name %q", err, tc.wantStep)
			case !strings.Contains(out.String(), "✘ FAILED"):
				t.Errorf("the narration does not show the failure:\n%s", out.String())
			}
		})
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"approve", "r1", "--comment", "it's fine", ""})
	if want := `approve r1 --comment 'it'\''s fine' ''`; got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}
