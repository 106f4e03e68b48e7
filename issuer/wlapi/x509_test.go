package wlapi_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// watcher collects the X.509 contexts a go-spiffe client receives.
type watcher struct {
	ch   chan *workloadapi.X509Context
	errs chan error
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.ch <- c }
func (w *watcher) OnX509ContextWatchError(err error) {
	select {
	case w.errs <- err:
	default:
	}
}

// watch opens a FetchX509SVID stream with go-spiffe's client.
func (e *env) watch() *watcher {
	e.t.Helper()
	w := &watcher{ch: make(chan *workloadapi.X509Context, 100), errs: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { workloadapi.WatchX509Context(ctx, w, e.addr()); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return w
}

// await receives messages until one satisfies ok, checking every message
// on the way with checkSet, and returns its SVIDs.
func (e *env) await(w *watcher, what string, ok func([]*x509svid.SVID) bool) []*x509svid.SVID {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-w.ch:
			e.checkSet(c.SVIDs)
			if ok(c.SVIDs) {
				return c.SVIDs
			}
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// checkSet checks what every message must hold: the full set, identities
// first with the default one first, grant SVIDs with unique hints matching
// their grant extension, every chain verifying against the CA.
func (e *env) checkSet(svids []*x509svid.SVID) {
	e.t.Helper()
	if len(svids) < 2 || svids[0].ID != workloadID || svids[0].Hint != "" || svids[1].Hint != "" {
		e.t.Fatalf("message does not start with the two identity SVIDs: %v", describe(svids))
	}
	hints := map[string]bool{}
	for _, s := range svids {
		if _, _, err := x509svid.Verify(s.Certificates, e.ca.Bundle(), x509svid.WithTime(e.clock.Now())); err != nil {
			e.t.Errorf("%s (hint %q) does not verify: %v", s.ID, s.Hint, err)
		}
		g, err := grant.FromCertificate(s.Certificates[0])
		if s.Hint == "" {
			if !errors.Is(err, grant.ErrNoGrant) {
				e.t.Errorf("identity SVID %s: grant %v, %v", s.ID, g, err)
			}
			continue
		}
		if err != nil {
			e.t.Fatalf("grant extension: %v", err)
		}
		if hints[s.Hint] {
			e.t.Errorf("hint %q repeated", s.Hint)
		}
		hints[s.Hint] = true
		if g == nil || g.ID != s.Hint || s.ID != workloadID {
			e.t.Errorf("SVID with hint %q: ID %s, grant %v", s.Hint, s.ID, g)
		}
	}
}

func describe(svids []*x509svid.SVID) []string {
	var out []string
	for _, s := range svids {
		out = append(out, s.ID.String()+"#"+s.Hint)
	}
	return out
}

func hintsOf(svids []*x509svid.SVID) []string {
	var out []string
	for _, s := range svids[2:] {
		out = append(out, s.Hint)
	}
	return out
}

// TestX509GrantLifecycle follows one open stream while grants are issued,
// revoked and reach their end.
func TestX509GrantLifecycle(t *testing.T) {
	e := newEnv(t, uid)
	w := e.watch()
	first := e.await(w, "the first message", func(s []*x509svid.SVID) bool { return len(s) == 2 })
	if first[1].ID.String() != "spiffe://example.org/workload/other" {
		t.Fatalf("second SVID is %s", first[1].ID)
	}

	g1 := e.grant()
	got := e.await(w, "grant 1", func(s []*x509svid.SVID) bool { return slices.Equal(hintsOf(s), []string{g1.ID}) })
	if !bytes.Equal(got[0].Certificates[0].Raw, first[0].Certificates[0].Raw) {
		t.Error("the identity SVID changed without rotation")
	}
	g1cert := got[2].Certificates[0]

	e.clock.Add(time.Minute)
	g2 := e.grant()
	got = e.await(w, "grant 2", func(s []*x509svid.SVID) bool { return slices.Equal(hintsOf(s), []string{g1.ID, g2.ID}) })
	if !bytes.Equal(got[2].Certificates[0].Raw, g1cert.Raw) {
		t.Error("grant 1's SVID was minted again")
	}

	if _, err := e.is.Revoke(context.Background(), workloadID, g1.ID, "done", 0); err != nil {
		t.Fatal(err)
	}
	e.await(w, "grant 1 revoked", func(s []*x509svid.SVID) bool { return slices.Equal(hintsOf(s), []string{g2.ID}) })

	// Grant 2 reaches its end: dropped at once, before any sweep.
	e.clock.Set(g2.NotAfter)
	e.srv.Refresh()
	e.await(w, "grant 2 ended", func(s []*x509svid.SVID) bool { return len(s) == 2 })
}

// TestX509Rotation: once the clock passes half of an identity SVID's life,
// the stream carries a new one.
func TestX509Rotation(t *testing.T) {
	e := newEnv(t, uid)
	w := e.watch()
	first := e.await(w, "the first message", func(s []*x509svid.SVID) bool { return len(s) == 2 })
	e.clock.Add(31 * time.Minute) // past half of 1h (jitter 0)
	e.srv.Refresh()
	got := e.await(w, "a rotated identity", func(s []*x509svid.SVID) bool {
		return s[0].Certificates[0].SerialNumber.Cmp(first[0].Certificates[0].SerialNumber) != 0
	})
	if !got[0].Certificates[0].NotAfter.After(first[0].Certificates[0].NotAfter) {
		t.Error("the rotated SVID does not end later")
	}
	if got[0].PrivateKey == first[0].PrivateKey {
		t.Error("the rotated SVID has the same key")
	}
}

// rawClient dials the socket without go-spiffe.
func (e *env) rawClient() workload.SpiffeWorkloadAPIClient {
	e.t.Helper()
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return workload.NewSpiffeWorkloadAPIClient(cc)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

// TestX509SVIDResponseFields reads the wire message: every SVID carries the
// bundle, a PKCS#8 key and a DER chain; hints are unique.
func TestX509SVIDResponseFields(t *testing.T) {
	e := newEnv(t, uid)
	var ids []string
	for range 3 {
		ids = append(ids, e.grant().ID)
		e.clock.Add(time.Second)
	}
	stream, err := e.rawClient().FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Svids) != 5 {
		t.Fatalf("got %d SVIDs, want 5", len(resp.Svids))
	}
	hints := map[string]bool{}
	for i, s := range resp.Svids {
		if !bytes.Equal(s.Bundle, e.ca.Certificate().Raw) {
			t.Errorf("svids[%d]: bundle is not the CA certificate", i)
		}
		if _, err := x509.ParsePKCS8PrivateKey(s.X509SvidKey); err != nil {
			t.Errorf("svids[%d]: key: %v", i, err)
		}
		certs, err := x509.ParseCertificates(s.X509Svid)
		if err != nil || len(certs) != 1 {
			t.Errorf("svids[%d]: chain: %d certificates, %v", i, len(certs), err)
		}
		if i >= 2 {
			if s.Hint != ids[i-2] || hints[s.Hint] {
				t.Errorf("svids[%d]: hint %q, want %q once", i, s.Hint, ids[i-2])
			}
			hints[s.Hint] = true
		}
	}
}

// TestX509Bundles: the bundle stream carries the CA of the trust domain.
func TestX509Bundles(t *testing.T) {
	e := newEnv(t, uid)
	set, err := workloadapi.FetchX509Bundles(testContext(t), e.addr())
	if err != nil {
		t.Fatal(err)
	}
	b, ok := set.Get(td)
	if !ok || !b.HasX509Authority(e.ca.Certificate()) || set.Len() != 1 {
		t.Fatalf("bundles: %v", set.Bundles())
	}
}

// TestGrantSVIDEndsWithGrant: the grant SVID lasts exactly as long as the
// grant, and is served from the cache to the next stream.
func TestGrantSVIDEndsWithGrant(t *testing.T) {
	e := newEnv(t, uid)
	g := e.grant()
	c, err := workloadapi.FetchX509Context(testContext(t), e.addr())
	if err != nil {
		t.Fatal(err)
	}
	e.checkSet(c.SVIDs)
	if len(c.SVIDs) != 3 {
		t.Fatalf("got %v", describe(c.SVIDs))
	}
	if end := c.SVIDs[2].Certificates[0].NotAfter; !end.Equal(g.NotAfter) {
		t.Errorf("grant SVID ends %v, grant %v", end, g.NotAfter)
	}
	if st, err := e.is.Get(context.Background(), workloadID, g.ID); err != nil || st.State != issuer.StateIssued {
		t.Errorf("grant: %v, %v", st, err)
	}
	// Another stream gets the same certificates and keys until rotation.
	again, err := workloadapi.FetchX509Context(testContext(t), e.addr())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range again.SVIDs {
		a, _ := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
		b, _ := x509.MarshalPKCS8PrivateKey(c.SVIDs[i].PrivateKey)
		if !bytes.Equal(s.Certificates[0].Raw, c.SVIDs[i].Certificates[0].Raw) || !bytes.Equal(a, b) {
			t.Errorf("svids[%d] (hint %q) differs between two fetches", i, s.Hint)
		}
	}
}
