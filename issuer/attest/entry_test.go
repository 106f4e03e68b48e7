package attest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func mustID(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sel(t testing.TB, s string) attest.Selector {
	t.Helper()
	v, err := attest.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// entry returns an entry for id (a path in example.org) with the selectors.
func entry(t testing.TB, path string, ttl time.Duration, sels ...string) attest.Entry {
	t.Helper()
	e := attest.Entry{ID: mustID(t, "spiffe://example.org"+path), TTL: ttl}
	for _, s := range sels {
		e.Selectors = append(e.Selectors, sel(t, s))
	}
	return e
}

// ids returns the paths of the entries' IDs.
func ids(es []attest.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID.Path())
	}
	return out
}

func TestValidateEntries(t *testing.T) {
	h := time.Hour
	ok := entry(t, "/a", h, "unix:uid:1000")
	tests := []struct {
		name    string
		entries attest.Entries
		wantErr []string // substrings; none means valid
	}{
		{name: "empty list", entries: nil},
		{name: "valid", entries: attest.Entries{ok, entry(t, "/b", attest.MinTTL, "unix:path:/bin/b", "unix:uid:0"), entry(t, "/c", attest.MaxTTL, "unix:sha256:"+hashA)}},
		{name: "same id, other selectors", entries: attest.Entries{ok, entry(t, "/a", h, "unix:uid:1001")}},
		{name: "zero id", entries: attest.Entries{{Selectors: ok.Selectors, TTL: h}}, wantErr: []string{"entries[0].id: missing SPIFFE ID"}},
		{name: "id without path", entries: attest.Entries{{ID: mustID(t, "spiffe://example.org"), Selectors: ok.Selectors, TTL: h}}, wantErr: []string{"entries[0].id", "has no path"}},
		{name: "no selectors", entries: attest.Entries{ok, {ID: ok.ID, TTL: h}}, wantErr: []string{"entries[1].selectors: at least one selector"}},
		{name: "bad selector", entries: attest.Entries{{ID: ok.ID, TTL: h, Selectors: []attest.Selector{ok.Selectors[0], {Type: "unix:pid", Value: "1"}}}}, wantErr: []string{"entries[0].selectors[1]", "unknown type"}},
		{name: "bad selector value", entries: attest.Entries{{ID: ok.ID, TTL: h, Selectors: []attest.Selector{{Type: attest.TypeUID, Value: "x"}}}}, wantErr: []string{"entries[0].selectors[0]", "not a decimal ID"}},
		{name: "duplicate selector", entries: attest.Entries{entry(t, "/a", h, "unix:uid:1", "unix:gid:1", "unix:uid:1")}, wantErr: []string{"entries[0].selectors[2]: duplicate selector"}},
		{name: "ttl too short", entries: attest.Entries{entry(t, "/a", 59*time.Second, "unix:uid:1")}, wantErr: []string{"entries[0].ttl: 59s is outside [1m0s, 24h0m0s]"}},
		{name: "ttl too long", entries: attest.Entries{entry(t, "/a", 25*h, "unix:uid:1")}, wantErr: []string{"entries[0].ttl"}},
		{name: "zero ttl", entries: attest.Entries{entry(t, "/a", 0, "unix:uid:1")}, wantErr: []string{"entries[0].ttl"}},
		{
			name:    "duplicate entry, selectors reordered",
			entries: attest.Entries{entry(t, "/a", h, "unix:uid:1", "unix:gid:2"), ok, entry(t, "/a", 2*h, "unix:gid:2", "unix:uid:1")},
			wantErr: []string{"entries[2]: same id and selectors as entries[0]"},
		},
		{
			name:    "every problem reported",
			entries: attest.Entries{entry(t, "/a", 0, "unix:uid:1"), {ID: ok.ID, TTL: h}},
			wantErr: []string{"entries[0].ttl", "entries[1].selectors"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := attest.ValidateEntries(tt.entries)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ValidateEntries: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateEntries succeeded, want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestParseEntries(t *testing.T) {
	good := attest.EntryConfig{ID: "spiffe://example.org/a", Selectors: []string{"unix:uid:1000", "unix:path:/bin/a"}, TTL: "1h"}
	tests := []struct {
		name    string
		cfgs    []attest.EntryConfig
		want    attest.Entries
		wantErr []string
	}{
		{name: "none", cfgs: nil, want: attest.Entries{}},
		{
			name: "in order",
			cfgs: []attest.EntryConfig{good, {ID: "spiffe://example.org/b", Selectors: []string{"unix:sha256:" + hashA}, TTL: "90m"}},
			want: attest.Entries{
				entry(t, "/a", time.Hour, "unix:uid:1000", "unix:path:/bin/a"),
				entry(t, "/b", 90*time.Minute, "unix:sha256:"+hashA),
			},
		},
		{name: "missing id", cfgs: []attest.EntryConfig{{Selectors: good.Selectors, TTL: "1h"}}, wantErr: []string{"attest: entries[0].id: missing SPIFFE ID"}},
		{name: "bad id", cfgs: []attest.EntryConfig{good, {ID: "example.org/b", Selectors: good.Selectors, TTL: "1h"}}, wantErr: []string{"entries[1].id", `"example.org/b"`}},
		{name: "id without path", cfgs: []attest.EntryConfig{{ID: "spiffe://example.org", Selectors: good.Selectors, TTL: "1h"}}, wantErr: []string{"entries[0].id", "no path"}},
		{name: "bad selector", cfgs: []attest.EntryConfig{{ID: good.ID, Selectors: []string{"unix:uid:1", "unix:path:bin"}, TTL: "1h"}}, wantErr: []string{`entries[0].selectors[1]: selector "unix:path:bin"`}},
		{name: "no selectors", cfgs: []attest.EntryConfig{{ID: good.ID, TTL: "1h"}}, wantErr: []string{"entries[0].selectors: at least one"}},
		{name: "missing ttl", cfgs: []attest.EntryConfig{{ID: good.ID, Selectors: good.Selectors}}, wantErr: []string{"entries[0].ttl: missing TTL"}},
		{name: "bad ttl", cfgs: []attest.EntryConfig{{ID: good.ID, Selectors: good.Selectors, TTL: "1 hour"}}, wantErr: []string{"entries[0].ttl", `"1 hour"`}},
		{name: "ttl out of range", cfgs: []attest.EntryConfig{{ID: good.ID, Selectors: good.Selectors, TTL: "30s"}}, wantErr: []string{"entries[0].ttl: 30s is outside"}},
		{name: "duplicate", cfgs: []attest.EntryConfig{good, good}, wantErr: []string{"entries[1]: same id and selectors as entries[0]"}},
		{
			name:    "every parse problem",
			cfgs:    []attest.EntryConfig{{ID: "x", Selectors: good.Selectors, TTL: "1h"}, good, {ID: good.ID, Selectors: []string{"nope"}, TTL: "h"}},
			wantErr: []string{"entries[0].id", "entries[2].selectors[0]", "entries[2].ttl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := attest.ParseEntries(tt.cfgs)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseEntries = %v, want an error", got)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEntries: %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseEntries = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	h := time.Hour
	es := attest.Entries{
		entry(t, "/uid", h, "unix:uid:1000"),
		entry(t, "/b", h, "unix:uid:1000", "unix:path:/bin/b"),
		entry(t, "/hash", h, "unix:sha256:"+hashA),
		entry(t, "/uid", 2*h, "unix:path:/bin/a"),             // same ID as the first, other selectors
		{ID: mustID(t, "spiffe://example.org/empty"), TTL: h}, // invalid: must match nothing
	}
	tests := []struct {
		name     string
		workload []string
		want     []string
	}{
		{name: "nothing", workload: nil, want: nil},
		{name: "all selectors of two entries, in order", workload: []string{"unix:path:/bin/b", "unix:uid:1000", "unix:gid:5"}, want: []string{"/uid", "/b"}},
		{name: "part of an entry's selectors", workload: []string{"unix:path:/bin/b", "unix:uid:1001"}, want: nil},
		{name: "same id matched twice, given once", workload: []string{"unix:uid:1000", "unix:path:/bin/a"}, want: []string{"/uid"}},
		{name: "second entry of an id", workload: []string{"unix:uid:2000", "unix:path:/bin/a"}, want: []string{"/uid"}},
		{name: "hash", workload: []string{"unix:uid:2000", "unix:sha256:" + hashA}, want: []string{"/hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := attest.NewSelectors()
			for _, s := range tt.workload {
				ws.Add(sel(t, s))
			}
			got := es.Match(ws)
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("Match = %v, want %v", ids(got), tt.want)
			}
			if tt.name == "second entry of an id" && got[0].TTL != 2*h {
				t.Errorf("matched entry %v, want the one with the path selector", got[0])
			}
		})
	}
}

func TestDiff(t *testing.T) {
	h := time.Hour
	a := entry(t, "/a", h, "unix:uid:1", "unix:gid:1")
	aReordered := entry(t, "/a", h, "unix:gid:1", "unix:uid:1")
	aLonger := entry(t, "/a", 2*h, "unix:uid:1", "unix:gid:1")
	aOtherSels := entry(t, "/a", h, "unix:uid:2")
	b := entry(t, "/b", h, "unix:path:/bin/b")
	c := entry(t, "/c", h, "unix:path:/bin/c")
	tests := []struct {
		name                    string
		prev, next              attest.Entries
		added, removed, changed []attest.Entry
	}{
		{name: "both empty"},
		{name: "unchanged", prev: attest.Entries{a, b}, next: attest.Entries{a, b}},
		{name: "selector order only", prev: attest.Entries{a, b}, next: attest.Entries{aReordered, b}},
		{name: "all added", next: attest.Entries{a, b}, added: []attest.Entry{a, b}},
		{name: "all removed", prev: attest.Entries{a, b}, removed: []attest.Entry{a, b}},
		{name: "one added in the middle", prev: attest.Entries{a, c}, next: attest.Entries{a, b, c}, added: []attest.Entry{b}},
		{name: "ttl changed", prev: attest.Entries{a, b}, next: attest.Entries{aLonger, b}, changed: []attest.Entry{aLonger}},
		{name: "selectors changed", prev: attest.Entries{a, b}, next: attest.Entries{aOtherSels, b}, added: []attest.Entry{aOtherSels}, removed: []attest.Entry{a}},
		{name: "reordered", prev: attest.Entries{a, b, c}, next: attest.Entries{b, a, c}, changed: []attest.Entry{b, a}},
		{name: "removal keeps others' order", prev: attest.Entries{a, b, c}, next: attest.Entries{a, c}, removed: []attest.Entry{b}},
		{name: "repeated entries", prev: attest.Entries{a}, next: attest.Entries{a, a}, added: []attest.Entry{a}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed, changed := attest.Diff(tt.prev, tt.next)
			for _, c := range []struct {
				what      string
				got, want []attest.Entry
			}{{"added", added, tt.added}, {"removed", removed, tt.removed}, {"changed", changed, tt.changed}} {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestEntryString(t *testing.T) {
	e := entry(t, "/backup", time.Hour, "unix:uid:1000", "unix:path:/usr/bin/backup")
	want := "spiffe://example.org/backup [unix:path:/usr/bin/backup unix:uid:1000] ttl=1h0m0s"
	if got := e.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func ExampleParseEntries() {
	entries, err := attest.ParseEntries([]attest.EntryConfig{
		{ID: "spiffe://example.org/backup", Selectors: []string{"unix:uid:1000", "unix:path:/usr/bin/backup"}, TTL: "1h"},
		{ID: "spiffe://example.org/any-1000", Selectors: []string{"unix:uid:1000"}, TTL: "10m"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The selectors an Attestor found for a caller.
	caller := attest.NewSelectors(
		attest.Selector{Type: attest.TypeUID, Value: "1000"},
		attest.Selector{Type: attest.TypeGID, Value: "1000"},
		attest.Selector{Type: attest.TypePath, Value: "/usr/bin/backup"},
	)
	for _, e := range entries.Match(caller) {
		fmt.Println(e.ID, e.TTL)
	}
	// Output:
	// spiffe://example.org/backup 1h0m0s
	// spiffe://example.org/any-1000 10m0s
}
