package policy

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestIDPatternMatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		id      string
		want    bool
	}{
		{name: "fixed equal", pattern: "spiffe://ex.org/person/alice", id: "spiffe://ex.org/person/alice", want: true},
		{name: "fixed other", pattern: "spiffe://ex.org/person/alice", id: "spiffe://ex.org/person/alicia", want: false},
		{name: "fixed is not a prefix", pattern: "spiffe://ex.org/person", id: "spiffe://ex.org/person/alice", want: false},
		{name: "trust domain id", pattern: "spiffe://ex.org", id: "spiffe://ex.org", want: true},
		{name: "trust domain id is not a wildcard", pattern: "spiffe://ex.org", id: "spiffe://ex.org/a", want: false},
		{name: "star one segment", pattern: "spiffe://ex.org/person/*", id: "spiffe://ex.org/person/bob", want: true},
		{name: "star not zero segments", pattern: "spiffe://ex.org/person/*", id: "spiffe://ex.org/person", want: false},
		{name: "star not two segments", pattern: "spiffe://ex.org/person/*", id: "spiffe://ex.org/person/a/b", want: false},
		{name: "star other trust domain", pattern: "spiffe://ex.org/person/*", id: "spiffe://other.org/person/bob", want: false},
		{name: "star trust domain prefix", pattern: "spiffe://ex.org/person/*", id: "spiffe://ex.org.evil/person/bob", want: false},
		{name: "star first segment", pattern: "spiffe://ex.org/*/payments", id: "spiffe://ex.org/ns1/payments", want: true},
		{name: "star first segment wrong tail", pattern: "spiffe://ex.org/*/payments", id: "spiffe://ex.org/ns1/payment", want: false},
		{name: "star first segment longer tail", pattern: "spiffe://ex.org/*/payments", id: "spiffe://ex.org/ns1/payments/x", want: false},
		{name: "two stars", pattern: "spiffe://ex.org/*/sa/*", id: "spiffe://ex.org/ns/sa/web", want: true},
		{name: "two stars missing middle", pattern: "spiffe://ex.org/*/sa/*", id: "spiffe://ex.org/ns/web", want: false},
		{name: "star only", pattern: "spiffe://ex.org/*", id: "spiffe://ex.org/a", want: true},
		{name: "star only no path", pattern: "spiffe://ex.org/*", id: "spiffe://ex.org", want: false},
		{name: "prefix", pattern: "spiffe://ex.org/person/oncall-*", id: "spiffe://ex.org/person/oncall-bob", want: true},
		{name: "prefix needs more", pattern: "spiffe://ex.org/person/oncall-*", id: "spiffe://ex.org/person/oncall-", want: false},
		{name: "prefix other", pattern: "spiffe://ex.org/person/oncall-*", id: "spiffe://ex.org/person/offcall-bob", want: false},
		{name: "prefix not deeper", pattern: "spiffe://ex.org/person/oncall-*", id: "spiffe://ex.org/person/oncall-bob/x", want: false},
		{name: "prefix after star", pattern: "spiffe://ex.org/*/oncall-*", id: "spiffe://ex.org/team/oncall-x", want: true},
		{name: "prefix after star wrong", pattern: "spiffe://ex.org/*/oncall-*", id: "spiffe://ex.org/team/x", want: false},
		{name: "case sensitive path", pattern: "spiffe://ex.org/Person/*", id: "spiffe://ex.org/person/a", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseIDPattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			id := spiffeid.RequireFromString(tt.id)
			if got := p.match(id); got != tt.want {
				t.Errorf("%s matches %s = %v, want %v", tt.pattern, tt.id, got, tt.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { p.match(id) }); allocs != 0 {
				t.Errorf("match allocates %v times", allocs)
			}
		})
	}
	if (&idPattern{raw: "spiffe://ex.org/a", fixed: true}).match(spiffeid.ID{}) {
		t.Error("a zero ID matched")
	}
	p, _ := parseIDPattern("spiffe://ex.org/*")
	if p.match(spiffeid.ID{}) {
		t.Error("a zero ID matched a wildcard")
	}
}

func TestIDPatternRejects(t *testing.T) {
	tests := []struct {
		name, pattern, msg string
	}{
		{name: "no scheme", pattern: "ex.org/a", msg: "not a SPIFFE ID pattern"},
		{name: "other scheme", pattern: "spiffy://ex.org/a", msg: "not a SPIFFE ID pattern"},
		{name: "empty trust domain", pattern: "spiffe:///a", msg: "invalid trust domain"},
		{name: "wildcard trust domain", pattern: "spiffe://*/a", msg: "cannot be wildcarded"},
		{name: "partial wildcard trust domain", pattern: "spiffe://*.ex.org/a", msg: "cannot be wildcarded"},
		{name: "uppercase trust domain", pattern: "spiffe://Ex.org/a", msg: "invalid trust domain"},
		{name: "trailing slash", pattern: "spiffe://ex.org/a/", msg: `segment ""`},
		{name: "prefix not last", pattern: "spiffe://ex.org/a*/b", msg: "last segment only"},
		{name: "suffix wildcard", pattern: "spiffe://ex.org/*a", msg: "whole segment"},
		{name: "double star", pattern: "spiffe://ex.org/**", msg: "whole segment"},
		{name: "bad char", pattern: "spiffe://ex.org/a b", msg: `segment "a b"`},
		{name: "bad char in prefix", pattern: "spiffe://ex.org/a b*", msg: "invalid prefix"},
		{name: "dot prefix", pattern: "spiffe://ex.org/..*", msg: "invalid prefix"},
		{name: "query", pattern: "spiffe://ex.org/a?b", msg: `segment "a?b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseIDPattern(tt.pattern); err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("parseIDPattern(%q) = %v, want error with %q", tt.pattern, err, tt.msg)
			}
		})
	}
}
