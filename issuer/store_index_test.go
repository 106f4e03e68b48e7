package issuer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/kv"
	"golang.org/x/mod/sumdb/note"
)

// TestRevokedIndexesOldStore checks that a store written before the
// revocation index existed (no i/x/ keys, no completion mark) is indexed on
// first use, and that an index marked complete is trusted as it is.
func TestRevokedIndexesOldStore(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := kv.Open(t.TempDir(), kv.Config{Logger: quiet, GCInterval: -1, AsyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	skey, _, err := audit.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(db.DB, audit.Config{Signer: signer, Origin: "test", Actor: "spiffe://example.org/jitd", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	s := NewBadgerStore(db.DB, log)
	ctx := context.Background()
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rec := audit.Record{Actor: "spiffe://example.org/jitd", Action: audit.ActionGrantRevoked}
	for n := 1; n <= 3; n++ {
		r := &Request{ID: fmt.Sprintf("r%026d", n), Requester: "spiffe://example.org/person/dev", State: StateRevoked,
			TTL: time.Hour, CreateTime: base, UpdateTime: base, StartTime: base, NotAfter: base.Add(time.Duration(n) * time.Hour), Version: 1}
		if err := s.Put(ctx, nil, r, rec); err != nil {
			t.Fatal(err)
		}
	}
	// Make it a store of before the index: drop its keys and mark.
	err = db.DropPrefix([]byte("i/x/"), revokedIndexDone)
	if err != nil {
		t.Fatal(err)
	}
	got := func() string {
		rs, err := s.Revoked(ctx, base.Add(90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s@%v", r.GrantID[len(r.GrantID)-1:], r.NotAfter.Sub(base)))
		}
		return fmt.Sprint(out)
	}
	if g := got(); g != "[2@2h0m0s 3@3h0m0s]" {
		t.Errorf("first Revoked on an old store = %s, want requests 2 and 3", g)
	}
	// Marked complete, the index is what counts: a key removed behind the
	// store's back is not put back.
	err = db.Update(func(txn *badger.Txn) error {
		return txn.Delete(revokedKey(base.Add(3*time.Hour), fmt.Sprintf("r%026d", 3)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if g := got(); g != "[2@2h0m0s]" {
		t.Errorf("Revoked after the index was marked complete = %s, want request 2 alone", g)
	}
}
