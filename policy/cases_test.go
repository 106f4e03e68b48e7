package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestExampleCases(t *testing.T) {
	p, err := Load("testdata/example.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases, err := LoadCases("testdata/example_cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 17 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, r := range p.RunCases(cases) {
		if !r.Pass {
			t.Errorf("line %d: %s:\n%s\n%s", r.Line, r.Name, r.Diff, r.Got.Explain())
		}
	}
}

func TestRunCasesDiff(t *testing.T) {
	p := mustParse(t, decidePolicy)
	cases, err := ParseCases([]byte(`cases:
  - name: wrong everything
    request:
      requester: spiffe://ex.org/workload/payments
      scopes: [{method: /bank.v1.Ledger/Refund, resources: [accounts/1]}]
      ttl: 10m
      reason: INC-1
      use_limit: 1
    expect:
      outcome: auto_approved
      rule: other
      factors: []
      reason_contains: [nope]
  - name: right
    request:
      requester: spiffe://ex.org/workload/payments
      scopes: [{method: /bank.v1.Ledger/Refund, resources: [accounts/1]}]
      ttl: 10m
      reason: INC-1
      use_limit: 1
    expect: {outcome: needs_approval, rule: narrow, factors: [{count: 1, from: [sre]}, {count: 1, from: [sec]}], reason_contains: matched}
`))
	if err != nil {
		t.Fatal(err)
	}
	res := p.RunCases(cases)
	want := `outcome: got needs_approval, want auto_approved
rule: got "narrow", want "other"
factors: got 1 approver from [sre] and 1 from [sec], want none
reasons: none contains "nope"; got`
	if res[0].Pass || !strings.HasPrefix(res[0].Diff, want) || res[0].Line != 2 || res[0].Name != "wrong everything" {
		t.Errorf("result 0: %+v\nwant diff\n%s", res[0], want)
	}
	if !res[1].Pass || res[1].Diff != "" || res[1].Got.Rule != "narrow" {
		t.Errorf("result 1: %+v", res[1])
	}
}

func TestParseCasesRejects(t *testing.T) {
	const req = "    request: {requester: spiffe://ex.org/a, ttl: 1m}\n"
	tests := []struct {
		name, doc string
		line      int
		key, msg  string
	}{
		{name: "empty", doc: "", msg: "empty file"},
		{name: "no cases", doc: "tests: []\n", line: 1, key: "tests", msg: "unknown key"},
		{name: "cases missing", doc: "{}\n", line: 1, key: "cases", msg: "required"},
		{name: "cases empty", doc: "cases: []\n", line: 1, key: "cases", msg: "empty"},
		{name: "name missing", doc: "cases:\n  - expect: {outcome: denied}\n" + req, line: 2, key: "cases[0].name", msg: "required"},
		{name: "duplicate name", doc: "cases:\n  - name: a\n" + req + "    expect: {outcome: denied}\n  - name: a\n" + req + "    expect: {outcome: denied}\n", line: 5, key: "cases[1].name", msg: `"a" duplicates the case at line 2`},
		{name: "request missing", doc: "cases:\n  - name: a\n    expect: {outcome: denied}\n", line: 2, key: "cases[0].request", msg: "required"},
		{name: "expect missing", doc: "cases:\n  - name: a\n" + req, line: 2, key: "cases[0].expect", msg: "required"},
		{name: "unknown request key", doc: "cases:\n  - name: a\n    request: {requestor: x}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.requestor", msg: "unknown key"},
		{name: "requester missing", doc: "cases:\n  - name: a\n    request: {ttl: 1m}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.requester", msg: "required"},
		{name: "bad requester", doc: "cases:\n  - name: a\n    request: {requester: bob}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.requester", msg: "not a SPIFFE ID"},
		{name: "bad ttl", doc: "cases:\n  - name: a\n    request: {requester: spiffe://ex.org/a, ttl: 10}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.ttl", msg: "must be a duration"},
		{name: "bad time", doc: "cases:\n  - name: a\n    request: {requester: spiffe://ex.org/a, time: monday}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.time", msg: "RFC 3339"},
		{name: "scope without method", doc: "cases:\n  - name: a\n    request: {requester: spiffe://ex.org/a, scopes: [{resources: [x]}]}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.scopes[0].method", msg: "required"},
		{name: "bad outcome", doc: "cases:\n  - name: a\n" + req + "    expect: {outcome: approved}\n", line: 4, key: "cases[0].expect.outcome", msg: `"approved": want denied, needs_approval`},
		{name: "outcome missing", doc: "cases:\n  - name: a\n" + req + "    expect: {rule: x}\n", line: 4, key: "cases[0].expect.outcome", msg: "required"},
		{name: "unknown expect key", doc: "cases:\n  - name: a\n" + req + "    expect: {outcome: denied, reason: x}\n", line: 4, key: "cases[0].expect.reason", msg: "unknown key (want one of: outcome, rule, factors, reason_contains)"},
		{name: "factor without count", doc: "cases:\n  - name: a\n" + req + "    expect: {outcome: denied, factors: [{from: [x]}]}\n", line: 4, key: "cases[0].expect.factors[0].count", msg: "required"},
		{name: "use_limit negative", doc: "cases:\n  - name: a\n    request: {requester: spiffe://ex.org/a, use_limit: -1}\n    expect: {outcome: denied}\n", line: 3, key: "cases[0].request.use_limit", msg: "must be between 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCases([]byte(tt.doc))
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a *FileError", err)
			}
			found := false
			for _, p := range fe.Problems {
				if p.Line == tt.line && p.Path == tt.key && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at line %d, %s with %q:\n%v", tt.line, tt.key, tt.msg, err)
			}
		})
	}
	if _, err := LoadCases("testdata/missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadCases missing: %v", err)
	}
}
