package issuer_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
)

// TestCreateIssuesInOneCommit checks that a request approved at creation and
// due now is created and issued in one commit: two consecutive entries,
// both changes seen by OnChange and watchers in order, version 2 stored.
func TestCreateIssuesInOneCommit(t *testing.T) {
	read := func(csr bool) issuer.CreateInput {
		in := issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: 5 * time.Minute}
		if csr {
			in.CSR = csrFor(t, dev)
		}
		return in
	}
	scheduled := read(true)
	breakGlass := issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.LedgerAdmin/*"}}, TTL: 10 * time.Minute, Reason: "ledger down", BreakGlass: true, CSR: csrFor(t, dev)}
	weakKey := read(true)
	weakKey.CSR = rsaCSR(t, 1024) // no SVID may certify it: refused before anything is stored
	type step struct {
		action  audit.Action
		state   issuer.State
		version uint64
	}
	created := func(st issuer.State) step { return step{audit.ActionRequestCreated, st, 1} }
	issued := step{audit.ActionGrantIssued, issuer.StateIssued, 2}
	tests := []struct {
		name    string
		in      issuer.CreateInput
		start   time.Duration // from now; 0: none
		wantErr bool
		want    []step // in the log, to OnChange and to watchers, in order
	}{
		{"auto-approved with a CSR", read(true), 0, false, []step{created(issuer.StateApproved), issued}},
		{"auto-approved without a CSR", read(false), 0, false, []step{created(issuer.StateApproved), issued}},
		{"break-glass", breakGlass, 0, false, []step{{audit.ActionBreakGlass, issuer.StateApproved, 1}, issued}},
		{"auto-approved, scheduled", scheduled, 10 * time.Minute, false, []step{created(issuer.StateApproved)}},
		{"needs approval", refund(t, dev), 0, false, []step{created(issuer.StatePending)}},
		{"a key the CA would refuse", weakKey, 0, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var mu sync.Mutex
			var changes []step
			is, err := issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: e.policies, ID: jitdID, Clock: e.clock.Now, Logger: quiet(),
				OnChange: func(r *issuer.Request, a audit.Action) {
					mu.Lock()
					defer mu.Unlock()
					changes = append(changes, step{a, r.State, r.Version})
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(is.Close)
			events, stop := is.Changes()
			defer stop()
			if tt.start > 0 {
				tt.in.Start = e.clock.Now().Add(tt.start)
			}
			size, commits := e.log.Size(), e.log.Stats().GroupSize.Count
			r, _, err := is.Create(context.Background(), dev, tt.in)
			if tt.wantErr {
				if err == nil || r != nil || e.log.Size() != size {
					t.Fatalf("Create: %v, %v; log %d entries after %d: want an error and nothing written", r, err, e.log.Size(), size)
				}
				return
			}
			if err != nil || r == nil {
				t.Fatalf("Create: %v", err)
			}

			var logged, watched []step
			for seq := size; seq < e.log.Size(); seq++ {
				en, err := e.log.Entry(seq)
				if err != nil {
					t.Fatal(err)
				}
				if en.Subject != r.ID {
					t.Errorf("entry %d is about %q, want %s", seq, en.Subject, r.ID)
				}
				logged = append(logged, step{action: en.Action})
			}
			for _, w := range tt.want {
				ev := <-events
				watched = append(watched, step{w.action, ev.State, ev.Version})
			}
			var wantLogged []step
			for _, w := range tt.want {
				wantLogged = append(wantLogged, step{action: w.action})
			}
			if !slices.Equal(logged, wantLogged) {
				t.Errorf("audit entries %v, want %v", logged, wantLogged)
			}
			if got := e.log.Stats().GroupSize.Count - commits; got != 1 {
				t.Errorf("%d commits, want 1", got)
			}
			mu.Lock()
			if !slices.Equal(changes, tt.want) {
				t.Errorf("OnChange saw %v, want %v", changes, tt.want)
			}
			mu.Unlock()
			if !slices.Equal(watched, tt.want) {
				t.Errorf("watcher saw %v, want %v", watched, tt.want)
			}

			last := tt.want[len(tt.want)-1]
			stored := e.get(r.ID)
			if stored.State != last.state || stored.Version != last.version || r.State != last.state || r.Version != last.version {
				t.Errorf("stored %s v%d, Create returned %s v%d, want %s v%d", stored.State, stored.Version, r.State, r.Version, last.state, last.version)
			}
			if hasCert := len(stored.CertChain) > 0; hasCert != (last.state == issuer.StateIssued && tt.in.CSR != nil) {
				t.Errorf("stored %s with %d certificates", stored.State, len(stored.CertChain))
			}
		})
	}
}

// rsaCSR returns a CSR for dev with an RSA key of this many bits.
func rsaCSR(t *testing.T, bits int) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return csrWithKey(t, dev, key)
}
