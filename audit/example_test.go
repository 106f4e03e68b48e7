package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"math"
	"os"
	"strings"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/kv"
	"golang.org/x/mod/sumdb/note"
)

// The daemon records a state change and its audit entry in one commit; an
// auditor later verifies an export offline with the public key.
func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := kv.Open(dir, kv.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// Once, at setup: the audit key pair (WritePrivateKey keeps the
	// private half in a 0600 file; the public half goes to auditors).
	skey, vkey, err := audit.GenerateKey("example.org/jitgrant-audit")
	if err != nil {
		log.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}

	auditLog, err := audit.New(db.DB, audit.Config{
		Signer: signer,
		Origin: "jitgrant audit example.org",
		Actor:  "spiffe://example.org/jitd",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Approve a request: the new state and the entry commit together.
	e, err := auditLog.Append(ctx, audit.Record{
		Actor:   "spiffe://example.org/user/bob",
		Action:  audit.ActionRequestApproved,
		Subject: "req-1",
		Details: map[string]string{"factor": "oncall"},
	}, func(tx audit.Tx) error {
		return tx.Set([]byte("req/req-1"), []byte("APPROVED"))
	})
	if err != nil {
		log.Fatal(err) // nothing was written: neither state nor entry
	}
	fmt.Println("entry", e.Seq)

	var export bytes.Buffer
	if err := auditLog.Export(ctx, &export, 0, math.MaxUint64); err != nil {
		log.Fatal(err)
	}
	if err := auditLog.Close(); err != nil {
		log.Fatal(err)
	}

	// The auditor, offline, with the export and the public key.
	ex, err := audit.ParseExport(&export)
	if err != nil {
		log.Fatal(err)
	}
	key, err := audit.ParseVerifier(vkey)
	if err != nil {
		log.Fatal(err)
	}
	res, err := audit.Verify(ex, key, nil)
	if err != nil {
		log.Fatal(err) // names the first bad sequence number
	}
	fmt.Println(strings.HasPrefix(res.String(), "OK: 1 entries, root "))
	// Output:
	// entry 0
	// true
}
