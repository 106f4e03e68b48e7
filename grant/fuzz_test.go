package grant

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// re-encodes to the very same bytes (DER has one encoding per value).
func FuzzParse(f *testing.F) {
	for _, g := range []*Grant{sample(), withScopes(3)} {
		der, err := Marshal(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		g, err := Parse(der)
		if err != nil {
			if g != nil {
				t.Fatalf("Parse returned a grant and an error %v", err)
			}
			return
		}
		again, err := Marshal(g)
		if err != nil {
			t.Fatalf("Marshal rejects what Parse accepted: %v", err)
		}
		if !bytes.Equal(again, der) {
			t.Fatalf("round trip changed the encoding:\n in %x\nout %x", der, again)
		}
		for _, s := range g.Scopes {
			g.Authorize(s.Method, "x/y")
		}
	})
}

// FuzzMatchResource checks the allocation-free matcher against the plain
// definition: split both on "/", same length, each segment equal or "*".
func FuzzMatchResource(f *testing.F) {
	f.Add("accounts/*", "accounts/42")
	f.Add("a/*/c", "a/b/c")
	f.Add("*", "")
	f.Add("a", "a/")
	f.Add("a/*", "a/..")
	f.Fuzz(func(t *testing.T, pattern, resource string) {
		if ValidateResourcePattern(pattern) != nil {
			return
		}
		want := resource != ""
		ps, rs := strings.Split(pattern, "/"), strings.Split(resource, "/")
		if len(ps) != len(rs) {
			want = false
		}
		for i := 0; want && i < len(ps); i++ {
			if rs[i] == "" || rs[i] == "." || rs[i] == ".." || (ps[i] != "*" && ps[i] != rs[i]) {
				want = false
			}
		}
		if got := MatchResource(pattern, resource); got != want {
			t.Fatalf("MatchResource(%q, %q) = %v, want %v", pattern, resource, got, want)
		}
	})
}
