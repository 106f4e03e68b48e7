package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// baseLines is a minimal valid policy; tests edit it line by line, so the
// line numbers in expectations are those of this listing.
var baseLines = []string{
	`version: 1`, // 1
	`groups:`,    // 2
	`  sre: {members: ["spiffe://ex.org/person/*"]}`,     // 3
	`  ops: {members: ["spiffe://ex.org/person/alice"]}`, // 4
	`rules:`,      // 5
	`  - name: r`, // 6
	`    requesters: ["spiffe://ex.org/workload/*"]`, // 7
	`    scopes: [{method: /a.B/C}]`,                 // 8
	`    approvals: [{count: 1, from: [sre]}]`,       // 9
	`    description: base`,                          // 10
}

// edit returns baseLines with line n (1-based) replaced by each text, and
// extra lines appended.
func edit(repl map[int]string, extra ...string) string {
	lines := append([]string(nil), baseLines...)
	for n, text := range repl {
		lines[n-1] = text
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

func TestParseValid(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data, Options{})
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	if got := p.RuleNames(); strings.Join(got, ",") != "ledger-read,ledger-refund,ledger-admin-emergency,ledger-writeoff,oncall-read" {
		t.Errorf("RuleNames = %v", got)
	}
	if p.MaxTTL() != time.Hour {
		t.Errorf("MaxTTL = %v", p.MaxTTL())
	}
	if len(p.Hash()) != 64 || p.Hash() != hashOf(data) {
		t.Errorf("Hash = %q", p.Hash())
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q", w)
	}
	if _, err := Parse([]byte(edit(nil)), Options{}); err != nil {
		t.Fatalf("base: %v", err)
	}
}

func TestParseOptions(t *testing.T) {
	doc := edit(map[int]string{1: "version: 1\nmax_ttl: 8h"})
	if _, err := Parse([]byte(doc), Options{}); err == nil || !strings.Contains(err.Error(), "line 2: max_ttl: 8h is above the global cap 1h") {
		t.Errorf("default cap: %v", err)
	}
	p, err := Parse([]byte(doc), Options{MaxTTLCap: 8 * time.Hour})
	if err != nil {
		t.Fatalf("raised cap: %v", err)
	}
	if p.MaxTTL() != 8*time.Hour || p.rules[0].maxTTL != 8*time.Hour {
		t.Errorf("MaxTTL = %v, rule max_ttl = %v", p.MaxTTL(), p.rules[0].maxTTL)
	}
	for _, c := range []time.Duration{-time.Hour, time.Millisecond, 25 * time.Hour} {
		if _, err := Parse([]byte(edit(nil)), Options{MaxTTLCap: c}); err == nil || !strings.Contains(err.Error(), "Options.MaxTTLCap") {
			t.Errorf("MaxTTLCap %v: %v", c, err)
		}
	}
}

func TestParseWarnings(t *testing.T) {
	doc := `version: 1
groups:
  sre: {members: ["spiffe://ex.org/person/*"]}
  idle: {members: ["spiffe://ex.org/x"]}
  ops: {members: ["spiffe://ex.org/person/alice", "spiffe://ex.org/person/bob"]}
rules:
  - name: r
    requesters: ["spiffe://ex.org/person/*"]
    scopes: [{method: /a.B/C}]
    approvals: [{count: 2, from: [ops]}]
  - name: s
    requesters: [sre]
    scopes: [{method: /a.B/D}]
    approvals: [{count: 1, from: [sre]}]
`
	p, err := Parse([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Warnings(), "\n")
	for _, want := range []string{
		"group idle is defined but no rule or permission uses it",
		`line 8: rules[0].requesters: requests by spiffe://ex.org/person/alice (it matches "spiffe://ex.org/person/*") can never be approved`,
		`requests by spiffe://ex.org/person/bob`,
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	p, err = Parse([]byte("version: 1\n"), Options{})
	if err != nil || len(p.Warnings()) != 1 || !strings.Contains(p.Warnings()[0], "no rules") {
		t.Errorf("empty policy: %v %q", err, p.Warnings())
	}
	if p.Decide(Request{}).Outcome != Denied {
		t.Error("empty policy did not deny")
	}
}

func TestParseErrorFormat(t *testing.T) {
	doc := edit(map[int]string{1: "version: 2", 9: `    approvals: [{count: 0, from: [ghost]}]`})
	_, err := Parse([]byte(doc), Options{})
	var fe *FileError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %T %v, want *FileError wrapping ErrInvalid", err, err)
	}
	if len(fe.Problems) != 3 {
		t.Fatalf("%d problems, want 3 (every problem at once):\n%v", len(fe.Problems), err)
	}
	want := "policy: line 1: version: unsupported version 2 (this jitgrant reads version 1)\n" +
		"policy: line 9: rules[0].approvals[0].count: must be at least 1, not 0\n" +
		`policy: line 9: rules[0].approvals[0].from[0]: group "ghost" is not defined`
	if err.Error() != want {
		t.Errorf("err =\n%s\nwant\n%s", err, want)
	}
	dir := t.TempDir()
	path := dir + "/example.yaml"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "policy: "+path+": line 1: version:") {
		t.Errorf("Load err = %v", err)
	}
	if _, err := Load(dir+"/missing.yaml", Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load missing: %v", err)
	}
	big := make([]byte, MaxFileSize+1)
	if _, err := Parse(big, Options{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse big: %v", err)
	}
}

// TestDocExample keeps the package doc's example and testdata/example.yaml
// the same file.
func TestDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(src), "// A commented example (testdata/example.yaml; a test keeps them equal):\n//\n")
	if !ok {
		t.Fatal("doc.go has no example")
	}
	var doc strings.Builder
	for line := range strings.Lines(after) {
		if line == "//\n" {
			doc.WriteString("\n")
			continue
		}
		text, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			break
		}
		doc.WriteString(text)
	}
	file, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(doc.String()), strings.TrimSpace(string(file)); got != want {
		t.Errorf("the doc example differs from testdata/example.yaml:\n%s", got)
	}
}
