package wlapi_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestX509GrantExtended: an approved extension reaches an open stream at
// once, without waiting for the old SVID's end: go-spiffe's client gets a
// new SVID of the same grant (same hint, same grant ID) ending at the
// grant's new end.
func TestX509GrantExtended(t *testing.T) {
	e := newEnv(t, uid)
	w := e.watch()
	g := e.grant()
	got := e.await(w, "the grant", func(s []*x509svid.SVID) bool { return slices.Equal(hintsOf(s), []string{g.ID}) })
	old := got[2].Certificates[0]
	if !old.NotAfter.Equal(g.NotAfter) {
		t.Fatalf("grant SVID ends %s, want %s", old.NotAfter, g.NotAfter)
	}
	x, err := e.is.Extend(context.Background(), workloadID, g.ID, 3*time.Minute, "more work")
	if err != nil {
		t.Fatal(err)
	}
	if want := g.NotAfter.Add(3 * time.Minute); !x.NotAfter.Equal(want) {
		t.Fatalf("extended grant ends %s, want %s", x.NotAfter, want)
	}
	got = e.await(w, "the extended grant", func(s []*x509svid.SVID) bool {
		return slices.Equal(hintsOf(s), []string{g.ID}) && s[2].Certificates[0].NotAfter.Equal(x.NotAfter)
	})
	if got[2].Certificates[0].SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("the extended grant's SVID has the old serial")
	}
}
