package attest_test

import (
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/issuer/attest"
)

const hashA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in      string
		want    attest.Selector
		wantErr string // substring; "" means success
	}{
		{in: "unix:uid:1000", want: attest.Selector{Type: attest.TypeUID, Value: "1000"}},
		{in: "unix:uid:0", want: attest.Selector{Type: attest.TypeUID, Value: "0"}},
		{in: "unix:uid:4294967295", want: attest.Selector{Type: attest.TypeUID, Value: "4294967295"}},
		{in: "unix:gid:20", want: attest.Selector{Type: attest.TypeGID, Value: "20"}},
		{in: "unix:user:alice", want: attest.Selector{Type: attest.TypeUser, Value: "alice"}},
		{in: "unix:user:EXAMPLE\\alice smith", want: attest.Selector{Type: attest.TypeUser, Value: "EXAMPLE\\alice smith"}},
		{in: "unix:group:wheel", want: attest.Selector{Type: attest.TypeGroup, Value: "wheel"}},
		{in: "unix:path:/usr/bin/backup", want: attest.Selector{Type: attest.TypePath, Value: "/usr/bin/backup"}},
		{in: "unix:path:/opt/a:b", want: attest.Selector{Type: attest.TypePath, Value: "/opt/a:b"}},
		{in: "unix:path:/", want: attest.Selector{Type: attest.TypePath, Value: "/"}},
		{in: "unix:sha256:" + hashA, want: attest.Selector{Type: attest.TypeSHA256, Value: hashA}},

		{in: "", wantErr: "unknown type"},
		{in: "unix", wantErr: "unknown type"},
		{in: "unix:", wantErr: `unknown type "unix:"`},
		{in: "UNIX:uid:1", wantErr: "unknown type"},
		{in: "k8s:ns:default", wantErr: "unknown type"},
		{in: "unix:pid:1", wantErr: `unknown type "unix:pid"`},
		{in: "unix:uid", wantErr: "missing value"},
		{in: "unix:uid:", wantErr: "empty value"},
		{in: "unix:uid:-1", wantErr: "not a decimal ID"},
		{in: "unix:uid:+1", wantErr: "not a decimal ID"},
		{in: "unix:uid:01", wantErr: "not a decimal ID"},
		{in: "unix:uid: 1", wantErr: "not a decimal ID"},
		{in: "unix:uid:4294967296", wantErr: "not a decimal ID"},
		{in: "unix:gid:wheel", wantErr: "not a decimal ID"},
		{in: "unix:user:a\nb", wantErr: "control characters"},
		{in: "unix:group:\xff", wantErr: "invalid UTF-8"},
		{in: "unix:path:usr/bin/x", wantErr: "not an absolute, clean path"},
		{in: "unix:path:/usr/../bin/x", wantErr: "not an absolute, clean path"},
		{in: "unix:path:/usr/bin/", wantErr: "not an absolute, clean path"},
		{in: "unix:path://usr/bin", wantErr: "not an absolute, clean path"},
		{in: "unix:sha256:" + strings.ToUpper(hashA), wantErr: "64 lowercase hex"},
		{in: "unix:sha256:" + hashA[:63], wantErr: "64 lowercase hex"},
		{in: "unix:sha256:" + hashA + "0", wantErr: "64 lowercase hex"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := attest.ParseSelector(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSelector(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "attest: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSelector(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"unix:uid:1000", "unix:gid:0", "unix:user:alice", "unix:group:wheel",
		"unix:path:/usr/bin/x", "unix:sha256:" + hashA, "unix:uid:01", "unix:path:/a/../b",
		"unix:", "", "unix:user:a\x00b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := attest.ParseSelector(s)
		if err != nil {
			return
		}
		// What parses is canonical: it prints back to the input and
		// parses again to the same selector.
		if sel.String() != s {
			t.Fatalf("ParseSelector(%q).String() = %q", s, sel.String())
		}
		again, err := attest.ParseSelector(sel.String())
		if err != nil || again != sel {
			t.Fatalf("reparse of %q = %v, %v; want %v", s, again, err, sel)
		}
		if sel.Value == "" {
			t.Fatalf("ParseSelector(%q) accepted an empty value", s)
		}
		// A parsed selector is valid in an entry.
		es := attest.Entries{{ID: mustID(t, "spiffe://example.org/x"), Selectors: []attest.Selector{sel}, TTL: attest.MinTTL}}
		if err := attest.ValidateEntries(es); err != nil {
			t.Fatalf("entry with selector %q: %v", s, err)
		}
	})
}

func TestSelectors(t *testing.T) {
	uid := attest.Selector{Type: attest.TypeUID, Value: "1000"}
	path := attest.Selector{Type: attest.TypePath, Value: "/bin/x"}
	gid := attest.Selector{Type: attest.TypeGID, Value: "10"}
	s := attest.NewSelectors(uid, path, uid)
	if len(s) != 2 || !s.Has(uid) || !s.Has(path) || s.Has(gid) {
		t.Fatalf("NewSelectors = %v", s)
	}
	if !s.HasAll(nil) || !s.HasAll([]attest.Selector{path, uid}) || s.HasAll([]attest.Selector{uid, gid}) {
		t.Error("HasAll wrong")
	}
	s.Add(gid)
	if got, want := s.String(), "unix:gid:10 unix:path:/bin/x unix:uid:1000"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
