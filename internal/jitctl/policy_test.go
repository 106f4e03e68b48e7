package jitctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	examplePolicy = "../../policy/testdata/example.yaml"
	exampleCases  = "../../policy/testdata/example_cases.yaml"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// brokenPolicy has three problems, on lines 4, 7 and 11.
const brokenPolicy = `version: 1
max_ttl: 1h
groups:
  sre: {members: []}
rules:
  - name: r
    colour: blue
    requesters: ["spiffe://example.org/person/*"]
    scopes: [{method: /bank.v1.Ledger/Refund}]
    approvals:
      - {count: 0, from: [sre]}
`

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"example", []string{"policy", "check", examplePolicy}, 0,
			[]string{"OK: " + examplePolicy + ": 5 rules, sha256 "}},
		{"broken", []string{"policy", "check", writeFile(t, "broken.yaml", brokenPolicy)}, 1,
			[]string{"broken.yaml:4:", "groups.sre.members", "broken.yaml:7:", "rules[0].colour", "broken.yaml:11:", "rules[0].approvals[0].count", "FAIL: "}},
		{"missing file", []string{"policy", "check", filepath.Join(t.TempDir(), "none.yaml")}, 1, nil},
		{"cap too low for the file", []string{"policy", "check", examplePolicy, "--max-ttl-cap", "10m"}, 1, []string{"max_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, want := range tt.contains {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	stdout, _, code := run(t, "-o", "json", "policy", "check", examplePolicy)
	var ok policyCheckJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &ok) != nil || !ok.OK || len(ok.Rules) != 5 || len(ok.SHA256) != 64 {
		t.Fatalf("exit %d: %s", code, stdout)
	}
	stdout, _, code = run(t, "-o", "json", "policy", "check", writeFile(t, "broken.yaml", brokenPolicy))
	var bad policyCheckJSON
	if code != 1 || json.Unmarshal([]byte(stdout), &bad) != nil || bad.OK || len(bad.Problems) != 3 {
		t.Fatalf("exit %d: %s", code, stdout)
	}
	if p := bad.Problems[0]; p.Line != 4 || p.Path != "groups.sre.members" || p.Message == "" {
		t.Errorf("first problem = %+v", p)
	}
}

func TestPolicyTest(t *testing.T) {
	t.Run("all pass", func(t *testing.T) {
		stdout, stderr, code := run(t, "policy", "test", examplePolicy, exampleCases)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"PASS  short balance read in working hours is automatic (" + exampleCases + ":4): auto-approved (rule ledger-read)\n",
			"PASS  refund needs two (" + exampleCases + ":23): needs approval from 1 approver from [sre] and 1 approver from [security] (rule ledger-refund)\n",
			"PASS  refund too long (" + exampleCases + ":35): denied because ttl 30m exceeds rule max_ttl 15m (rule ledger-refund)\n",
			"17 passed, 0 failed\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("a failing case", func(t *testing.T) {
		cases := writeFile(t, "cases.yaml", `cases:
  - name: refund is automatic (wrong)
    request:
      requester: spiffe://example.org/workload/payments
      scopes: [{method: /bank.v1.Ledger/Refund, resources: [accounts/1]}]
      ttl: 10m
      reason: "INC-1: x"
      use_limit: 1
    expect: {outcome: auto_approved, rule: ledger-read}
  - name: bob breaks no glass
    request:
      requester: spiffe://example.org/person/bob
      scopes: [{method: /bank.v1.LedgerAdmin/Rebuild}]
      ttl: 30m
      reason: "INC-9"
      break_glass: true
    expect: {outcome: denied}
`)
		stdout, _, code := run(t, "policy", "test", examplePolicy, cases)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, stdout)
		}
		for _, want := range []string{
			"FAIL  refund is automatic (wrong) (" + cases + ":2): needs approval from 1 approver from [sre] and 1 approver from [security] (rule ledger-refund)\n",
			"        outcome: got needs_approval, want auto_approved\n",
			`        rule: got "ledger-refund", want "ledger-read"` + "\n",
			"PASS  bob breaks no glass",
			"1 passed, 1 failed\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}

		stdout, _, code = run(t, "-o", "json", "policy", "test", examplePolicy, cases)
		var got policyTestJSON
		if code != 1 || json.Unmarshal([]byte(stdout), &got) != nil || got.Passed != 1 || got.Failed != 1 || len(got.Cases) != 2 {
			t.Fatalf("exit %d: %s", code, stdout)
		}
		if c := got.Cases[0]; c.Pass || c.Outcome != "needs_approval" || c.Rule != "ledger-refund" || len(c.Diff) != 2 || len(c.Factors) != 2 {
			t.Errorf("case 0 = %+v", c)
		}
	})

	t.Run("bad cases file", func(t *testing.T) {
		cases := writeFile(t, "cases.yaml", "cases:\n  - name: x\n    expect: {outcome: maybe}\n")
		stdout, _, code := run(t, "policy", "test", examplePolicy, cases)
		if code != 1 || !strings.Contains(stdout, "cases.yaml:2:") || !strings.Contains(stdout, "cases.yaml:3:") {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
	})

	t.Run("broken policy", func(t *testing.T) {
		stdout, _, code := run(t, "policy", "test", writeFile(t, "broken.yaml", brokenPolicy), exampleCases)
		if code != 1 || !strings.Contains(stdout, "broken.yaml:4:") {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
	})
}
