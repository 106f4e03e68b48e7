package wlapi_test

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEntriesReload: after a reload and Refresh, an open stream attests
// its caller again: it gets the new set, and PermissionDenied once no entry
// matches.
func TestEntriesReload(t *testing.T) {
	e := newEnv(t, uid)
	g := e.grant()
	w := e.watch()
	e.await(w, "the first message", func(s []*x509svid.SVID) bool { return len(s) == 3 })

	only := uidEntries(t, uid)[:1]
	e.entries.Store(&only)
	e.srv.Refresh()
	select {
	case c := <-w.ch:
		if len(c.SVIDs) != 2 || c.SVIDs[0].ID != workloadID || c.SVIDs[1].Hint != g.ID {
			t.Fatalf("after the reload: %v", describe(c.SVIDs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the reloaded set")
	}

	none := uidEntries(t, uid+1)
	e.entries.Store(&none)
	e.srv.Refresh()
	select {
	case err := <-w.errs:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("stream ended with %v, want PermissionDenied", err)
		}
	case c := <-w.ch:
		t.Fatalf("a caller with no entry got %v", describe(c.SVIDs))
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the stream to end")
	}
}

// TestGracefulStop: open streams do not hold a graceful stop up.
func TestGracefulStop(t *testing.T) {
	e := newEnv(t, uid)
	w := e.watch()
	e.await(w, "the first message", func(s []*x509svid.SVID) bool { return len(s) == 2 })
	done := make(chan struct{})
	go func() { e.srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop did not return")
	}
}
