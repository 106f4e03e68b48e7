package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// tamperLog builds the log the tamper cases start from: 45 records with a
// checkpoint recorded every 10, so entries 10, 21, 32 and 43 are checkpoints
// and the log has 49 entries.
func tamperLog(t *testing.T) (*testLog, []byte) {
	t.Helper()
	l := newTestLog(t, func(c *Config) { c.CheckpointEvery = 10 })
	for i := range 45 {
		mustAppend(t, l.Log, record(i))
		l.sync(t)
		l.clock.Advance(1e9)
	}
	if l.Size() != 49 {
		t.Fatalf("Size() = %d, want 49", l.Size())
	}
	_, raw := export(t, l.Log, 0, 49)
	return l, raw
}

// lines splits an export into header, entry lines and checkpoint line.
func lines(raw []byte) []string { return strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") }

func join(ls []string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }

// rewrite parses raw, lets f change the parsed export, then recomputes the
// whole hash chain (as a forger would) and writes it out again.
func rewrite(t *testing.T, raw []byte, f func(ex *Export)) []byte {
	t.Helper()
	ex, err := ParseExport(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	f(ex)
	prev := ex.PrevHash
	for i := range ex.Entries {
		e := &ex.Entries[i]
		e.Seq = ex.From + uint64(i)
		e.PrevHash = prev
		e.Hash = e.ComputeHash()
		prev = e.Hash
	}
	ex.To = ex.From + uint64(len(ex.Entries))
	var buf bytes.Buffer
	if _, err := ex.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func forged(seq uint64) Entry {
	return Entry{Seq: seq, Time: newFakeClock().Now(), Record: Record{
		Actor: "spiffe://example.org/user/mallory", Action: ActionRequestApproved, Subject: "req-666",
	}}
}

// resign signs the text of note msg with another key.
func resign(t *testing.T, msg string, signer note.Signer) string {
	t.Helper()
	text, _, _ := strings.Cut(msg, "\n\n")
	out, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestVerifyCatchesTampering(t *testing.T) {
	l, raw := tamperLog(t)
	other, _ := testKeys(t, "example.org/audit", 2)     // same name, another key
	stranger, _ := testKeys(t, "evil.example/audit", 3) // another name too
	tests := []struct {
		name   string
		tamper func(t *testing.T, raw []byte) []byte
		seq    uint64
		kind   Kind
	}{
		{
			name: "one byte flipped in details",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				ls[1+15] = strings.Replace(ls[1+15], "ticket OPS-", "ticket OPT-", 1)
				return join(ls)
			},
			seq: 15, kind: KindEdited,
		},
		{
			name: "entry deleted",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				return join(append(ls[:1+15:1+15], ls[1+16:]...))
			},
			seq: 15, kind: KindMissing,
		},
		{
			name: "two entries swapped",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				ls[1+15], ls[1+16] = ls[1+16], ls[1+15]
				return join(ls)
			},
			seq: 15, kind: KindReordered,
		},
		{
			name: "entry duplicated",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				return join(append(ls[:1+16:1+16], append([]string{ls[1+15]}, ls[1+16:]...)...))
			},
			seq: 15, kind: KindInserted,
		},
		{
			name: "forged entry inserted, chain recomputed (caught by a recorded checkpoint)",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) {
					ex.Entries = append(ex.Entries[:15:15], append([]Entry{forged(15)}, ex.Entries[15:]...)...)
				})
			},
			seq: 15, kind: KindInserted,
		},
		{
			name: "forged entry inserted, chain recomputed (caught by the export's checkpoint)",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) {
					ex.Entries = append(ex.Entries[:46:46], append([]Entry{forged(46)}, ex.Entries[46:]...)...)
				})
			},
			seq: 46, kind: KindInserted,
		},
		{
			name: "tail truncated below the checkpoint",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				return join(append(ls[:1+45:1+45], ls[len(ls)-1]))
			},
			seq: 45, kind: KindTruncated,
		},
		{
			name: "tail truncated below the checkpoint, header adjusted",
			tamper: func(t *testing.T, raw []byte) []byte {
				ls := lines(raw)
				ls[0] = strings.Replace(ls[0], `"to":49`, `"to":45`, 1)
				return join(append(ls[:1+45:1+45], ls[len(ls)-1]))
			},
			seq: 45, kind: KindTruncated,
		},
		{
			name: "checkpoint signed by another key",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) { ex.Checkpoint = []byte(resign(t, string(ex.Checkpoint), other)) })
			},
			// The recorded checkpoint at 43 vouches for entries below 43.
			seq: 43, kind: KindBadSignature,
		},
		{
			name: "checkpoint signed by a stranger",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) { ex.Checkpoint = []byte(resign(t, string(ex.Checkpoint), stranger)) })
			},
			seq: 43, kind: KindBadSignature,
		},
		{
			name: "recorded checkpoint signed by another key, chain recomputed",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) {
					d := ex.Entries[21].Details
					d["note"] = resign(t, d["note"], other)
				})
			},
			seq: 21, kind: KindBadSignature,
		},
		{
			name: "entry edited, chain recomputed",
			tamper: func(t *testing.T, raw []byte) []byte {
				return rewrite(t, raw, func(ex *Export) { ex.Entries[25].Subject = "req-999" })
			},
			// Only the checkpoint recorded at 32 catches it: it vouches
			// for [0, 32) and the one at 21 for [0, 21).
			seq: 21, kind: KindEdited,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, err := ParseExport(bytes.NewReader(tt.tamper(t, raw)))
			if err != nil {
				t.Fatalf("the tampered export does not parse: %v", err)
			}
			res, err := Verify(ex, l.verify, nil)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, %v; want a *VerifyError", res, err)
			}
			if ve.Seq != tt.seq || ve.Kind != tt.kind {
				t.Errorf("Verify: %v\nwant seq %d, %s", err, tt.seq, tt.kind)
			}
			if !strings.HasPrefix(err.Error(), "audit: verify: seq ") {
				t.Errorf("error %q lacks the audit: verify: prefix", err)
			}
		})
	}
	t.Run("untouched", func(t *testing.T) {
		ex, err := ParseExport(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Verify(ex, l.verify, nil)
		if err != nil || res.Entries != 49 || !strings.HasPrefix(res.String(), "OK: 49 entries, root ") {
			t.Fatalf("Verify = %v, %v", res, err)
		}
	})
}

func TestVerifyExtension(t *testing.T) {
	// Log A, and an old export of it.
	a := newTestLog(t, func(c *Config) { c.CheckpointEvery = 10 })
	var seqOf12 uint64
	for i := range 30 {
		e := mustAppend(t, a.Log, record(i))
		if i == 12 {
			seqOf12 = e.Seq
		}
		a.sync(t) // checkpoints happen at the same clock readings in A and B
		a.clock.Advance(1e9)
	}
	oldEx, _ := export(t, a.Log, 0, a.Size())
	older, err := OpenCheckpoint(oldEx.Checkpoint, a.verify)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a later export extends it", func(t *testing.T) {
		appendN(t, a.Log, 30, 15)
		for _, from := range []uint64{0, older.Size} {
			ex, _ := export(t, a.Log, from, a.Size())
			if _, err := Verify(ex, a.verify, older); err != nil {
				t.Errorf("from %d: %v", from, err)
			}
		}
	})

	t.Run("a newer export rewrites history before the older checkpoint", func(t *testing.T) {
		// Log B was rebuilt with the same key: the same records, with
		// record 12 changed, and more after.
		b := newTestLog(t, func(c *Config) { c.CheckpointEvery = 10 })
		for i := range 45 {
			r := record(i)
			if i == 12 {
				r.Details["reason"] = "nothing to see"
			}
			mustAppend(t, b.Log, r)
			b.sync(t)
			b.clock.Advance(1e9)
		}
		newEx, _ := export(t, b.Log, 0, b.Size())
		if _, err := Verify(newEx, b.verify, nil); err != nil {
			t.Fatalf("the rebuilt log verifies on its own: %v", err)
		}
		_, err := Verify(newEx, b.verify, older)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Kind != KindNotExtension || ve.End != older.Size {
			t.Fatalf("Verify with the older checkpoint: %v; want not an extension of [0, %d)", err, older.Size)
		}
		if seq, ok := FirstDifference(oldEx, newEx); !ok || seq != seqOf12 {
			t.Errorf("FirstDifference = %d, %v; want %d", seq, ok, seqOf12)
		}
	})

	t.Run("older checkpoint larger than the export's", func(t *testing.T) {
		small := newTestLog(t, nil)
		appendN(t, small.Log, 0, 3)
		ex, _ := export(t, small.Log, 0, 3)
		bigger := &Checkpoint{Origin: testOrigin, Size: 10}
		_, err := Verify(ex, small.verify, bigger)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Kind != KindNotExtension {
			t.Fatalf("Verify: %v, want not an extension", err)
		}
	})
}

func TestVerifyWrongKey(t *testing.T) {
	l := newTestLog(t, nil)
	appendN(t, l.Log, 0, 3)
	ex, _ := export(t, l.Log, 0, 3)
	_, wrong := testKeys(t, "example.org/audit", 9)
	_, err := Verify(ex, wrong, nil)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != KindBadSignature || ve.Seq != 0 {
		t.Fatalf("Verify with the wrong key: %v", err)
	}
	if _, err := OpenCheckpoint(ex.Checkpoint, wrong); !errors.Is(err, ErrBadSignature) {
		t.Errorf("OpenCheckpoint with the wrong key: %v", err)
	}
}
