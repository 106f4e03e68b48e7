package issuer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// history makes requests in every state through the issuer and returns them
// by name: ended ones (expired, denied, canceled, revoked with its grant
// over, timed out) and live ones (pending, issued, and revoked with its
// grant still running).
func (e *env) history(t *testing.T) map[string]*issuer.Request {
	t.Helper()
	ctx := context.Background()
	issued := func() *issuer.Request {
		r := e.create(dev, refund(t, dev))
		for _, who := range []spiffeid.ID{alice, bob} {
			if _, err := e.review(who, r.ID, true); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	out := map[string]*issuer.Request{}
	out["expired"] = issued()
	out["revoked-over"] = issued()
	if _, err := e.is.Revoke(ctx, dev, out["revoked-over"].ID, "done", 0); err != nil {
		t.Fatal(err)
	}
	out["timed-out"] = e.create(dev, refund(t, dev))
	e.clock.Add(31 * time.Minute) // past the grants' 10m and the 30m review timeout
	if err := e.is.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	out["denied"] = e.create(dev, refund(t, dev))
	if _, err := e.review(alice, out["denied"].ID, false); err != nil {
		t.Fatal(err)
	}
	out["canceled"] = e.create(alice, refund(t, alice))
	if _, err := e.is.Cancel(ctx, alice, out["canceled"].ID); err != nil {
		t.Fatal(err)
	}
	out["revoked-running"] = issued()
	if _, err := e.is.Revoke(ctx, bob, out["revoked-running"].ID, "done early", 0); err != nil {
		t.Fatal(err)
	}
	out["issued"] = issued()
	out["pending"] = e.create(dev, refund(t, dev))
	for name, r := range out {
		out[name] = e.get(r.ID)
	}
	return out
}

// TestRestartReadsNoEndedRequest checks that starting an issuer reads no
// request that has ended (nor one whose revoked grant is over): their
// stored records are made unreadable, and the restart must not notice.
func TestRestartReadsNoEndedRequest(t *testing.T) {
	e := newEnv(t)
	rs := e.history(t)
	err := e.db.Update(func(txn *badger.Txn) error {
		for _, name := range []string{"expired", "revoked-over", "timed-out", "denied", "canceled"} {
			if err := txn.Set([]byte("i/r/"+rs[name].ID), []byte("not a request")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.close()
	e.open() // fails the test if the issuer cannot start
	grants, err := e.is.ActiveGrants(context.Background(), dev)
	if err != nil || len(grants) != 1 || grants[0].ID != rs["issued"].ID {
		t.Errorf("ActiveGrants(dev) after restart = %v (%v), want the one issued grant", grants, err)
	}
	if _, err := e.is.Review(context.Background(), alice, rs["pending"].ID, true, ""); err != nil {
		t.Errorf("reviewing the pending request after restart: %v", err)
	}
}

// TestRestartServesHistory checks that after a restart, old requests show,
// list and page as before, and the audit log exports the same entries.
func TestRestartServesHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rs := e.history(t)
	lists := []struct {
		name string
		who  spiffeid.ID
		in   issuer.ListInput
	}{
		{"all", bob, issuer.ListInput{}},
		{"all, pages of 2", bob, issuer.ListInput{PageSize: 2}},
		{"ended states", bob, issuer.ListInput{States: []issuer.State{issuer.StateExpired, issuer.StateRevoked, issuer.StateDenied}}},
		{"live states", bob, issuer.ListInput{States: []issuer.State{issuer.StatePending, issuer.StateIssued}}},
		{"one ended state", bob, issuer.ListInput{States: []issuer.State{issuer.StateTimedOut}}},
		{"requester", bob, issuer.ListInput{Requester: alice.String()}},
		{"requester and ended state", bob, issuer.ListInput{Requester: dev.String(), States: []issuer.State{issuer.StateExpired, issuer.StateDenied}, PageSize: 1}},
		{"own requests", dev, issuer.ListInput{PageSize: 3}},
	}
	// snapshot renders what show, list and export return.
	snapshot := func() map[string]string {
		out := map[string]string{}
		for name, r := range rs {
			got, err := e.is.Get(ctx, dev, r.ID)
			if name == "canceled" {
				got, err = e.is.Get(ctx, alice, r.ID)
			}
			if err != nil {
				t.Fatalf("show %s: %v", name, err)
			}
			js, _ := json.Marshal(got)
			out["show "+name] = string(js)
		}
		for _, l := range lists {
			var pages []string
			in := l.in
			for {
				page, next, err := e.is.List(ctx, l.who, in)
				if err != nil {
					t.Fatalf("list %s: %v", l.name, err)
				}
				var ids []string
				for _, r := range page {
					ids = append(ids, r.ID+":"+string(r.State))
				}
				pages = append(pages, fmt.Sprint(ids))
				if next == "" {
					break
				}
				in.PageToken = next
			}
			out["list "+l.name] = fmt.Sprint(pages)
		}
		var buf bytes.Buffer
		if err := e.log.Export(ctx, &buf, 0, e.log.Size()); err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
		// The last line is the checkpoint, signed again by the new process.
		out["export"] = string(bytes.Join(lines[:len(lines)-1], []byte("\n")))
		return out
	}
	before := snapshot()
	if got := before["list all"]; got == "[[]]" {
		t.Fatal("list all is empty before the restart")
	}
	e.close()
	e.open()
	after := snapshot()
	for k, want := range before {
		if after[k] != want {
			t.Errorf("%s after restart:\n got %s\nwant %s", k, after[k], want)
		}
	}
}
