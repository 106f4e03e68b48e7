package wlapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// csrGrant creates an auto-approved grant of workloadID requested with a
// CSR: its key stays with the requester.
func (e *env) csrGrant() *issuer.Request {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{workloadID.URL()}}, key)
	if err != nil {
		e.t.Fatal(err)
	}
	r, _, err := e.is.Create(context.Background(), workloadID, issuer.CreateInput{
		Scopes: []grant.Scope{{Method: testledger.GetBalance}}, TTL: 5 * time.Minute, CSR: csr,
	})
	if err != nil || r.State != issuer.StateIssued {
		e.t.Fatalf("Create with a CSR: %v, %v", r, err)
	}
	return r
}

// TestX509CSRGrantNotServed: a grant requested with a CSR is not served on
// the Workload API (its key never left the requester), and it breaks
// nothing: an open stream goes on carrying the identities and the other
// grants, and new fetches succeed.
func TestX509CSRGrantNotServed(t *testing.T) {
	e := newEnv(t, uid)
	w := e.watch()
	e.await(w, "the first message", func(s []*x509svid.SVID) bool { return len(s) == 2 })

	withCSR := e.csrGrant()
	g := e.grant()
	e.await(w, "the grant made without a CSR", func(s []*x509svid.SVID) bool { return slices.Equal(hintsOf(s), []string{g.ID}) })

	c, err := workloadapi.FetchX509Context(testContext(t), e.addr())
	if err != nil {
		t.Fatalf("FetchX509Context with a CSR grant active: %v", err)
	}
	e.checkSet(c.SVIDs)
	if got := hintsOf(c.SVIDs); !slices.Equal(got, []string{g.ID}) {
		t.Errorf("grants served %v, want only %s (not %s, made with a CSR)", got, g.ID, withCSR.ID)
	}
	// The stream stays open and carries later changes.
	if _, err := e.is.Revoke(context.Background(), workloadID, g.ID, "done", 0); err != nil {
		t.Fatal(err)
	}
	e.await(w, "the grant revoked", func(s []*x509svid.SVID) bool { return len(s) == 2 })
	select {
	case err := <-w.errs:
		t.Errorf("the stream failed: %v", err)
	default:
	}
	// The identity SVID still rotates.
	e.clock.Add(31 * time.Minute)
	e.srv.Refresh()
	e.await(w, "a rotated identity", func(s []*x509svid.SVID) bool {
		return s[0].Certificates[0].SerialNumber.Cmp(c.SVIDs[0].Certificates[0].SerialNumber) != 0
	})
	// The requester fetches its certificate through the issuer API only.
	if _, err := e.is.Fetch(context.Background(), workloadID, withCSR.ID, true); !errIs(err, issuer.ErrState, "made with a CSR") {
		t.Errorf("Fetch with key of a CSR grant: %v, want ErrState", err)
	}
}

// TestX509UnservableGrantLeftOut: a grant whose SVID cannot be minted (here,
// one stored with a scope the grant extension refuses) is left out of the
// message; the identities and the other grants are served.
func TestX509UnservableGrantLeftOut(t *testing.T) {
	bad := "r" + strings.Repeat("0", 26)
	e := newEnvWith(t, uid, func(store issuer.Store, now time.Time) {
		r := &issuer.Request{
			ID: bad, Requester: workloadID.String(), State: issuer.StateIssued, Rule: "read",
			Scopes: []grant.Scope{{Method: "not a method"}}, TTL: 5 * time.Minute,
			CreateTime: now, UpdateTime: now, ReviewDeadline: now, StartTime: now, NotAfter: now.Add(5 * time.Minute).Truncate(time.Second),
			Version: 1,
		}
		rec := audit.Record{Actor: jitdID.String(), Action: audit.ActionGrantIssued, Subject: bad}
		if err := store.Put(context.Background(), nil, r, rec); err != nil {
			t.Fatal(err)
		}
	})
	g := e.grant()
	c, err := workloadapi.FetchX509Context(testContext(t), e.addr())
	if err != nil {
		t.Fatalf("FetchX509Context with an unservable grant active: %v", err)
	}
	e.checkSet(c.SVIDs)
	if got := hintsOf(c.SVIDs); !slices.Equal(got, []string{g.ID}) {
		t.Errorf("grants served %v, want only %s (not %s)", got, g.ID, bad)
	}
}

func errIs(err, target error, text string) bool {
	return err != nil && errors.Is(err, target) && strings.Contains(err.Error(), text)
}

// TestGrantSVIDEndsExactlyWithGrant: a grant ends on a whole second and its
// SVID ends exactly then, even when the grant starts, and its SVID is
// minted, at sub-second times; across the grant's last seconds the same
// SVID is served, never a new one minted for the tail, and at the grant's
// end it is gone.
func TestGrantSVIDEndsExactlyWithGrant(t *testing.T) {
	e := newEnv(t, uid)
	e.clock.Set(e.clock.Now().Truncate(time.Second).Add(time.Second + 200*time.Millisecond))
	g := e.grant()
	if !g.NotAfter.Equal(g.NotAfter.Truncate(time.Second)) {
		t.Errorf("grant ends at %v, not on a whole second", g.NotAfter)
	}
	if want := g.StartTime.Add(g.TTL).Truncate(time.Second); !g.NotAfter.Equal(want) {
		t.Errorf("grant ends at %v, want %v", g.NotAfter, want)
	}
	serials := map[string]bool{}
	fetch := func() (served bool) {
		t.Helper()
		c, err := workloadapi.FetchX509Context(testContext(t), e.addr())
		if err != nil {
			t.Fatal(err)
		}
		e.checkSet(c.SVIDs)
		for _, s := range c.SVIDs {
			if s.Hint != g.ID {
				continue
			}
			leaf := s.Certificates[0]
			if !leaf.NotAfter.Equal(g.NotAfter) {
				t.Errorf("at %v: grant SVID ends %v, grant %v", e.clock.Now(), leaf.NotAfter, g.NotAfter)
			}
			serials[leaf.SerialNumber.String()] = true
			served = true
		}
		return served
	}
	e.clock.Add(500 * time.Millisecond) // minted at .7 of a second
	if !fetch() {
		t.Fatal("the grant SVID is not served")
	}
	for at := g.NotAfter.Add(-3 * time.Second); at.Before(g.NotAfter); at = at.Add(250 * time.Millisecond) {
		e.clock.Set(at)
		if !fetch() {
			t.Errorf("at %v, before the grant's end %v, the grant SVID is not served", at, g.NotAfter)
		}
	}
	if len(serials) != 1 {
		t.Errorf("%d grant SVIDs minted over the grant's life, want 1", len(serials))
	}
	e.clock.Set(g.NotAfter)
	if fetch() {
		t.Error("the grant SVID is still served at the grant's end")
	}
}
