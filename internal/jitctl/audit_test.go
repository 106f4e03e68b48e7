package jitctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/kv"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// auditFixture is an audit log of n entries and its public key file.
type auditFixture struct {
	log    *audit.Log
	pub    string // path of the public key file
	dir    string
	origin string
}

func newAuditLog(t *testing.T, n int) *auditFixture {
	t.Helper()
	skey, vkey, err := audit.GenerateKey("jitgrant-audit-example.org")
	if err != nil {
		t.Fatal(err)
	}
	return newAuditLogKey(t, n, skey, vkey, nil)
}

// newAuditLogKey is newAuditLog with a given key; mod may change the log's
// configuration.
func newAuditLogKey(t *testing.T, n int, skey, vkey string, mod func(*audit.Config)) *auditFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := kv.Open(filepath.Join(dir, "db"), kv.Config{GCInterval: -1, AsyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &auditFixture{dir: dir, origin: "jitgrant audit example.org", pub: filepath.Join(dir, "audit.pub")}
	if err := os.WriteFile(f.pub, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := audit.Config{Signer: signer, Origin: f.origin, Actor: "spiffe://example.org/jitd"}
	if mod != nil {
		mod(&cfg)
	}
	f.log, err = audit.New(db.DB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.log.Close()
		db.Close()
	})
	f.append(t, n)
	return f
}

func (f *auditFixture) append(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		_, err := f.log.Append(context.Background(), audit.Record{
			Actor: "spiffe://example.org/person/alice", Action: audit.ActionRequestApproved,
			Subject: fmt.Sprintf("r%d", i), Details: map[string]string{"comment": fmt.Sprintf("ok %d", i)},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// export writes entries [from, to) to a file.
func (f *auditFixture) export(t *testing.T, from, to uint64) string {
	t.Helper()
	var b bytes.Buffer
	if err := f.log.Export(context.Background(), &b, from, to); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("export-%d-%d.jsonl", from, to))
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerify(t *testing.T) {
	f := newAuditLog(t, 20)
	good := f.export(t, 0, math.MaxUint64)

	t.Run("good", func(t *testing.T) {
		stdout, stderr, code := run(t, "audit", "verify", good, "--key", f.pub)
		if code != 0 || !strings.HasPrefix(stdout, "OK: 20 entries, root ") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		stdout, _, code = run(t, "-o", "json", "audit", "verify", good, "--key", f.pub)
		var got verifyJSON
		if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || !got.OK || got.Entries != 20 || got.Checkpoint.Size != 20 || got.Error != nil {
			t.Fatalf("exit %d: %s", code, stdout)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		data, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		// Line 0 is the header, so entry 7 is line 8.
		lines := strings.Split(string(data), "\n")
		if !strings.Contains(lines[8], `"seq":7,`) || !strings.Contains(lines[8], `"ok 7"`) {
			t.Fatalf("line 8 = %s", lines[8])
		}
		lines[8] = strings.Replace(lines[8], `"ok 7"`, `"ok 7, and refund everything"`, 1)
		bad := writeFile(t, "tampered.jsonl", strings.Join(lines, "\n"))
		stdout, stderr, code := run(t, "audit", "verify", bad, "--key", f.pub)
		if code != 1 || !strings.HasPrefix(stdout, "FAIL: "+bad+": seq 7: edited: ") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		stdout, _, code = run(t, "-o", "json", "audit", "verify", bad, "--key", f.pub)
		var got verifyJSON
		if code != 1 || json.Unmarshal([]byte(stdout), &got) != nil || got.OK || got.Error == nil || got.Error.Seq != 7 || got.Error.Kind != "edited" {
			t.Fatalf("exit %d: %s", code, stdout)
		}
	})

	t.Run("removed entry", func(t *testing.T) {
		data, _ := os.ReadFile(good)
		lines := strings.Split(string(data), "\n")
		lines = append(lines[:4], lines[5:]...) // drop entry 3
		bad := writeFile(t, "missing.jsonl", strings.Join(lines, "\n"))
		stdout, _, code := run(t, "audit", "verify", bad, "--key", f.pub)
		if code != 1 || !strings.Contains(stdout, "seq 3: missing") {
			t.Fatalf("exit %d: %s", code, stdout)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		bad := writeFile(t, "junk.jsonl", "not json\n")
		stdout, _, code := run(t, "audit", "verify", bad, "--key", f.pub)
		if code != 1 || !strings.Contains(stdout, "FAIL: ") || !strings.Contains(stdout, "line 1") {
			t.Fatalf("exit %d: %s", code, stdout)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		_, vkey, err := audit.GenerateKey("jitgrant-audit-example.org")
		if err != nil {
			t.Fatal(err)
		}
		other := writeFile(t, "other.pub", vkey)
		stdout, _, code := run(t, "audit", "verify", good, "--key", other)
		if code != 1 || !strings.Contains(stdout, "bad signature") {
			t.Fatalf("exit %d: %s", code, stdout)
		}
	})

	t.Run("older checkpoint", func(t *testing.T) {
		f := newAuditLog(t, 5)
		older := f.export(t, 0, math.MaxUint64)
		f.append(t, 4)
		newer := f.export(t, 0, math.MaxUint64)
		stdout, stderr, code := run(t, "audit", "verify", newer, "--key", f.pub, "--older-checkpoint", older)
		if code != 0 || !strings.HasPrefix(stdout, "OK: 9 entries") {
			t.Fatalf("exit %d: %s%s", code, stdout, stderr)
		}
		// A bare signed note works too.
		ex, err := audit.ParseExport(bytes.NewReader(mustRead(t, older)))
		if err != nil {
			t.Fatal(err)
		}
		noteFile := writeFile(t, "cp.note", string(ex.Checkpoint))
		if stdout, stderr, code := run(t, "audit", "verify", newer, "--key", f.pub, "--older-checkpoint", noteFile); code != 0 {
			t.Fatalf("exit %d: %s%s", code, stdout, stderr)
		}
	})

	t.Run("fork named by the older export", func(t *testing.T) {
		// Two logs with the same key and clock: b repeats a's first 12
		// entries, then differs.
		skey, vkey, err := audit.GenerateKey("jitgrant-audit-example.org")
		if err != nil {
			t.Fatal(err)
		}
		fixed := func(c *audit.Config) {
			c.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
			c.CheckpointEvery, c.CheckpointInterval = -1, -1
		}
		a := newAuditLogKey(t, 17, skey, vkey, fixed)
		b := newAuditLogKey(t, 12, skey, vkey, fixed)
		_, err = b.log.Append(context.Background(), audit.Record{Actor: "spiffe://example.org/person/mallory",
			Action: audit.ActionRequestApproved, Subject: "r12"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.append(t, 10)
		older, newer := a.export(t, 0, math.MaxUint64), b.export(t, 0, math.MaxUint64)
		want := "FAIL: " + newer + ": seq 12: not an extension: the log diverges from the older checkpoint at 12: entries before 12 match, entry 12 differs from the one the older checkpoint signed\n"
		if stdout, stderr, code := run(t, "audit", "verify", newer, "--key", a.pub, "--older-checkpoint", older); code != 1 || stdout != want {
			t.Fatalf("exit %d\nstdout: %s\nwant:   %s\nstderr: %s", code, stdout, want, stderr)
		}
	})

	t.Run("cut short", func(t *testing.T) {
		data := mustRead(t, good)
		lines := strings.SplitAfter(string(data), "\n")
		bad := writeFile(t, "cut.jsonl", strings.Join(lines[:1+8], "")) // header and entries 0 to 7
		want := "FAIL: " + bad + ": seq 8: truncated: the export ends after entry 7 (line 9) without its checkpoint line; its header says it holds entries [0, 20)\n"
		if stdout, stderr, code := run(t, "audit", "verify", bad, "--key", f.pub); code != 1 || stdout != want {
			t.Fatalf("exit %d\nstdout: %s\nwant:   %s\nstderr: %s", code, stdout, want, stderr)
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditProve checks proofs built from exports against the live log's
// own proofs, for whole and partial exports.
func TestAuditProve(t *testing.T) {
	f := newAuditLog(t, 37)
	tests := []struct {
		name     string
		from, to uint64
		seqs     []uint64
	}{
		{"whole log", 0, math.MaxUint64, []uint64{0, 1, 7, 8, 31, 32, 36}},
		{"from the middle", 13, math.MaxUint64, []uint64{13, 14, 16, 31, 36}},
		{"a range inside", 5, 22, []uint64{5, 6, 15, 21}},
		{"a single entry", 36, 37, []uint64{36}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := f.export(t, tt.from, tt.to)
			to := min(tt.to, 37)
			for _, seq := range tt.seqs {
				stdout, stderr, code := run(t, "-o", "json", "audit", "prove", file, "--seq", fmt.Sprint(seq), "--key", f.pub)
				if code != 0 {
					t.Fatalf("seq %d: exit %d: %s%s", seq, code, stdout, stderr)
				}
				var got proveJSON
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatal(err)
				}
				want, err := f.log.ProveInclusion(seq, to)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(got.Proof, ",") != strings.Join(hashStrings(want), ",") {
					t.Errorf("seq %d: proof differs from the log's:\n got %v\nwant %v", seq, got.Proof, hashStrings(want))
				}
				if got.TreeSize != to || got.Checkpoint.Size != 37 || got.Entry.Subject != fmt.Sprintf("r%d", seq) {
					t.Errorf("seq %d: %+v", seq, got)
				}
				if to < 37 && len(got.ConsistencyProof) == 0 {
					t.Errorf("seq %d: no consistency proof from %d to 37", seq, to)
				}
			}
		})
	}

	t.Run("table", func(t *testing.T) {
		file := f.export(t, 0, math.MaxUint64)
		stdout, stderr, code := run(t, "audit", "prove", file, "--seq", "9", "--key", f.pub)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"entry 9: request.approved by spiffe://example.org/person/alice on r9 at ",
			"tree:       size 37, root ", "inclusion proof (", "OK: entry 9 is in the tree of size 37 signed by the audit key"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("not in export", func(t *testing.T) {
		file := f.export(t, 10, 20)
		_, stderr, code := run(t, "audit", "prove", file, "--seq", "3", "--key", f.pub)
		if code != 1 || !strings.Contains(stderr, "entry 3 is not in this export, which holds entries [10, 20)") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})

	t.Run("tampered export", func(t *testing.T) {
		file := f.export(t, 0, math.MaxUint64)
		data := strings.Replace(string(mustRead(t, file)), `"ok 4"`, `"ok 44"`, 1)
		bad := writeFile(t, "bad.jsonl", data)
		_, stderr, code := run(t, "audit", "prove", bad, "--seq", "9", "--key", f.pub)
		if code != 1 || !strings.Contains(stderr, "does not verify") || !strings.Contains(stderr, "seq 4") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}

func TestExportTreeFringe(t *testing.T) {
	// Every tree size and start: the tree built from a fringe and leaves
	// has the root tlog computes from all leaves.
	var leaves []tlog.Hash
	for i := range 40 {
		leaves = append(leaves, tlog.RecordHash([]byte{byte(i)}))
	}
	for size := 1; size <= len(leaves); size++ {
		want, err := tlog.TreeHash(int64(size), leafReader(leaves))
		if err != nil {
			t.Fatal(err)
		}
		for from := range size {
			tr := &exportTree{from: uint64(from), to: uint64(size), leaves: leaves[from:size], known: map[[2]int64]tlog.Hash{}}
			lo := uint64(0)
			for level := 63; level >= 0; level-- {
				if uint64(from)&(1<<level) != 0 {
					h, err := tlog.TreeHash(int64(1<<level), leafReader(leaves[lo:]))
					if err != nil {
						t.Fatal(err)
					}
					tr.known[[2]int64{int64(level), int64(lo >> level)}] = h
					lo += 1 << level
				}
			}
			got, err := tlog.TreeHash(int64(size), tr)
			if err != nil || got != want {
				t.Fatalf("size %d from %d: root %v, %v; want %v", size, from, got, err, want)
			}
			for seq := from; seq < size; seq++ {
				p, err := tlog.ProveRecord(int64(size), int64(seq), tr)
				if err != nil {
					t.Fatalf("size %d from %d seq %d: %v", size, from, seq, err)
				}
				if err := tlog.CheckRecord(p, int64(size), want, int64(seq), leaves[seq]); err != nil {
					t.Fatalf("size %d from %d seq %d: %v", size, from, seq, err)
				}
			}
		}
	}
}

// leafReader serves the stored hashes of a tree over leaves, computing
// each from the leaves.
type leafReader []tlog.Hash

func (l leafReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		out[i] = subtree(l[n<<level : (n+1)<<level])
	}
	return out, nil
}

func subtree(leaves []tlog.Hash) tlog.Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	half := len(leaves) / 2
	return tlog.NodeHash(subtree(leaves[:half]), subtree(leaves[half:]))
}
