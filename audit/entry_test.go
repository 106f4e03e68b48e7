package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// goldenEntry is the sample entry whose encoding testdata/canonical.golden
// pins.
func goldenEntry() Entry {
	e := Entry{
		Seq:  42,
		Time: time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC),
		Record: Record{
			Actor:   "spiffe://example.org/user/alice",
			Action:  ActionRequestApproved,
			Subject: "req-0001",
			Details: map[string]string{"scope": "/ledger.v1.Ledger/*", "reason": "INC-42 — ünïcode", "approver": "spiffe://example.org/user/bob"},
		},
	}
	e.PrevHash = Hash{1, 2, 3}
	e.Hash = e.ComputeHash()
	return e
}

func TestCanonicalGolden(t *testing.T) {
	e := goldenEntry()
	canon := e.AppendCanonical(nil)
	got := fmt.Sprintf("canonical %s\nhash %s\nleaf %s\n", hex.EncodeToString(canon), e.Hash, e.LeafHash())
	path := filepath.Join("testdata", "canonical.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("canonical encoding changed; this breaks every existing log.\ngot:\n%s\nwant:\n%s", got, want)
	}
	// The same entry encodes the same way however its map was built.
	for range 20 {
		e2 := goldenEntry()
		if !bytes.Equal(e2.AppendCanonical(nil), canon) {
			t.Fatal("encoding depends on map iteration order")
		}
	}
}

func TestHashRules(t *testing.T) {
	e := goldenEntry()
	canon := e.AppendCanonical(nil)
	if want := Hash(sha256.Sum256(append(e.PrevHash[:], canon...))); e.Hash != want {
		t.Errorf("Hash is not SHA-256(prev || canonical)")
	}
	if want := tlog.RecordHash(append(canon, e.Hash[:]...)); e.LeafHash() != want {
		t.Errorf("LeafHash is not tlog.RecordHash(canonical || hash)")
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"golden", goldenEntry()},
		{"no details, no subject", Entry{Seq: 0, Time: time.Unix(0, 1).UTC(), Record: Record{Actor: testActor, Action: ActionPolicyLoaded}}},
		{"one detail", Entry{Seq: 1 << 40, Time: time.Unix(-5, 0).UTC(), Record: Record{Actor: testActor, Action: ActionGrantUsed, Subject: "g", Details: map[string]string{"k": ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			canon := tt.e.AppendCanonical(nil)
			got, err := decodeCanonical(canon)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.AppendCanonical(nil), canon) || !got.Time.Equal(tt.e.Time) {
				t.Errorf("round trip changed the entry: %+v", got)
			}
		})
	}
	g := goldenEntry()
	bad := map[string][]byte{
		"empty":    nil,
		"bad tag":  []byte("JGAUDIT2"),
		"trailing": append(g.AppendCanonical(nil), 0),
		"cut":      g.AppendCanonical(nil)[:30],
	}
	for name, b := range bad {
		if _, err := decodeCanonical(b); err == nil {
			t.Errorf("%s: decodeCanonical accepted it", name)
		}
	}
}

func TestRecordValidation(t *testing.T) {
	tests := []struct {
		name  string
		rec   Record
		known bool
		ok    bool
	}{
		{"valid", Record{Actor: testUser, Action: ActionGrantIssued, Subject: "g-1", Details: map[string]string{"serial": "01"}}, true, true},
		{"SPIFFE ID without path", Record{Actor: "spiffe://example.org", Action: ActionEnrolled}, true, true},
		{"empty trust domain", Record{Actor: "spiffe:///x", Action: ActionEnrolled}, true, false},
		{"query in ID", Record{Actor: "spiffe://example.org/x?y", Action: ActionEnrolled}, true, false},
		{"new action, parser", Record{Actor: testUser, Action: "grant.future_action"}, false, true},
		{"new action, append", Record{Actor: testUser, Action: "grant.future_action"}, true, false},
		{"malformed action", Record{Actor: testUser, Action: "Grant Issued"}, false, false},
		{"too many details", Record{Actor: testUser, Action: ActionGrantIssued, Details: manyDetails(MaxDetails + 1)}, true, false},
		{"subject too long", Record{Actor: testUser, Action: ActionGrantIssued, Subject: strings.Repeat("s", MaxSubjectLen+1)}, true, false},
		{"entry too large", Record{Actor: testUser, Action: ActionGrantIssued, Details: bigDetails(5, MaxDetailValueLen)}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.rec.validate(tt.known); (err == nil) != tt.ok {
				t.Errorf("validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	for _, a := range Actions() {
		if !a.Known() || !validActionName(string(a)) {
			t.Errorf("action %q is not known or malformed", a)
		}
	}
}

func manyDetails(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func bigDetails(n, size int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = strings.Repeat("v", size)
	}
	return m
}

func FuzzDecodeCanonical(f *testing.F) {
	g := goldenEntry()
	f.Add(g.AppendCanonical(nil))
	e := Entry{Time: time.Unix(0, 0).UTC(), Record: Record{Actor: testActor, Action: ActionPolicyLoaded}}
	f.Add(e.AppendCanonical(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeCanonical(b)
		if err != nil {
			return
		}
		// Whatever decodes is the one encoding of its entry.
		if !bytes.Equal(e.AppendCanonical(nil), b) {
			t.Fatalf("decode/encode is not the identity for %x", b)
		}
	})
}
