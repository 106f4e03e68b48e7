package audit

import (
	"bytes"
	"strings"
	"testing"
)

// forkedLogs builds two logs with the same key: a, of 77 entries, and b,
// which has the same first 70 entries, a different entry 70, and 90 entries.
func forkedLogs(t *testing.T) (a, b *testLog) {
	t.Helper()
	a, b = newTestLog(t, nil), newTestLog(t, nil)
	appendN(t, a.Log, 0, 77)
	appendN(t, b.Log, 0, 70)
	r := record(70)
	r.Details["reason"] = "nothing to see"
	mustAppend(t, b.Log, r)
	appendN(t, b.Log, 71, 19)
	return a, b
}

// TestVerifyMessages checks the exact message for each way an export can be
// wrong: it names the first bad sequence number and what is wrong with it.
func TestVerifyMessages(t *testing.T) {
	l, raw := tamperLog(t) // 49 entries, checkpoints recorded at 10, 21, 32 and 43
	ls := lines(raw)
	a, b := forkedLogs(t)
	_, olderRaw := export(t, a.Log, 0, 77)
	_, olderTail := export(t, a.Log, 72, 77)
	_, forkRaw := export(t, b.Log, 0, 90)

	// renumbered re-exports raw with f applied to its entries, without
	// recomputing the hash chain.
	renumbered := func(t *testing.T, f func(ex *Export)) []byte {
		ex, err := ParseExport(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		f(ex)
		var buf bytes.Buffer
		if _, err := ex.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	tests := []struct {
		name  string
		data  func(t *testing.T) []byte
		older []byte // an older export, for VerifyExtension
		oldCP bool   // use only the older export's checkpoint
		want  string
	}{
		{
			name: "cut after an entry line: no checkpoint line",
			data: func(*testing.T) []byte { return join(ls[:1+31]) },
			want: "audit: verify: seq 31: truncated: the export ends after entry 30 (line 32) without its checkpoint line; its header says it holds entries [0, 49)",
		},
		{
			name: "cut in the middle of an entry line",
			data: func(*testing.T) []byte { return []byte(strings.Join(ls[:1+31], "\n") + "\n" + ls[1+31][:40]) },
			want: "audit: verify: seq 31: truncated: the export ends in the middle of line 33, which should be entry 31, without its checkpoint line; its header says it holds entries [0, 49)",
		},
		{
			name: "cut in the middle of the checkpoint line",
			data: func(*testing.T) []byte {
				return []byte(strings.Join(ls[:len(ls)-1], "\n") + "\n" + ls[len(ls)-1][:40])
			},
			want: "audit: verify: seq 49: truncated: the export ends in the middle of its checkpoint line (line 51)",
		},
		{
			name: "only the header left",
			data: func(*testing.T) []byte { return join(ls[:1]) },
			want: "audit: verify: seq 0: truncated: the export ends after its header line: entries [0, 49) and the checkpoint line are missing",
		},
		{
			name: "tail cut, checkpoint line kept",
			data: func(*testing.T) []byte { return join(append(ls[:1+40:1+40], ls[len(ls)-1])) },
			want: "audit: verify: seq 40: truncated: entries [40, 49) are missing: the export stops at 40 but its header says it holds entries [0, 49)",
		},
		{
			name: "a damaged entry line",
			data: func(*testing.T) []byte {
				c := append([]string(nil), ls...)
				c[1+12] = strings.Replace(c[1+12], `"seq":12`, `"sqe":12`, 1)
				return join(c)
			},
			want: `audit: export line 14 (seq 12): entry: unknown field "sqe"`,
		},
		{
			name: "entry removed",
			data: func(*testing.T) []byte { return join(append(ls[:1+15:1+15], ls[1+16:]...)) },
			want: "audit: verify: seq 15: missing: entry 15 is absent (next is 16)",
		},
		{
			name: "entry removed, later entries renumbered",
			data: func(t *testing.T) []byte {
				return renumbered(t, func(ex *Export) {
					ex.Entries = append(ex.Entries[:15:15], ex.Entries[16:]...)
					for i := 15; i < len(ex.Entries); i++ {
						ex.Entries[i].Seq--
					}
				})
			},
			want: "audit: verify: seq 15: missing: 1 entry missing from 15: entry 15 is the log's entry 16 renumbered",
		},
		{
			name: "two entries swapped",
			data: func(*testing.T) []byte {
				c := append([]string(nil), ls...)
				c[1+15], c[1+16] = c[1+16], c[1+15]
				return join(c)
			},
			want: "audit: verify: seq 15: reordered: entry 15 comes after entry 16",
		},
		{
			name: "forged entry inserted, later entries renumbered",
			data: func(t *testing.T) []byte {
				return renumbered(t, func(ex *Export) {
					f := forged(15)
					f.PrevHash = ex.Entries[14].Hash
					f.Hash = f.ComputeHash()
					ex.Entries = append(ex.Entries[:15:15], append([]Entry{f}, ex.Entries[15:]...)...)
					for i := 16; i < len(ex.Entries); i++ {
						ex.Entries[i].Seq++
					}
				})
			},
			want: "audit: verify: seq 15: inserted: 1 entry inserted at 15: entry 16 is the log's entry 15 renumbered",
		},
		{
			name: "forged entry inserted before the logged one, not chained",
			data: func(t *testing.T) []byte {
				return renumbered(t, func(ex *Export) {
					f := forged(15) // its own hash is right; its prev_hash is not
					f.Hash = f.ComputeHash()
					ex.Entries = append(ex.Entries[:15:15], append([]Entry{f}, ex.Entries[15:]...)...)
				})
			},
			want: "audit: verify: seq 15: inserted: an entry 15 that is not in the hash chain comes before the logged entry 15",
		},
		{
			name: "forged entry inserted, chain recomputed",
			data: func(t *testing.T) []byte {
				return rewrite(t, raw, func(ex *Export) {
					ex.Entries = append(ex.Entries[:15:15], append([]Entry{forged(15)}, ex.Entries[15:]...)...)
				})
			},
			want: "audit: verify: seq 15: inserted: 1 entry more than the checkpoint recorded here signed; without entry 15 the rest matches the signed root of tree size 21",
		},
		{
			name: "entry edited",
			data: func(*testing.T) []byte {
				c := append([]string(nil), ls...)
				c[1+15] = strings.Replace(c[1+15], "ticket OPS-", "ticket OPT-", 1)
				return join(c)
			},
			want: "audit: verify: seq 15: edited: the entry's hash does not match its contents",
		},
		{
			name:  "fork at 70, older export at hand",
			data:  func(*testing.T) []byte { return forkRaw },
			older: olderRaw,
			want:  "audit: verify: seq 70: not an extension: the log diverges from the older checkpoint at 70: entries before 70 match, entry 70 differs from the one the older checkpoint signed",
		},
		{
			name:  "fork at 70, only the older checkpoint",
			data:  func(*testing.T) []byte { return forkRaw },
			older: olderRaw, oldCP: true,
			want: "audit: verify: seq 0 (in [0, 77)): not an extension: the log diverges from the older checkpoint somewhere in entries [0, 77): the checkpoint alone cannot say where; the older export can",
		},
		{
			name:  "fork at 70, older export from 72",
			data:  func(*testing.T) []byte { return forkRaw },
			older: olderTail,
			want:  "audit: verify: seq 0 (in [0, 72)): not an extension: the log diverges from the older checkpoint before entry 72, the first entry both exports hold: an export from an earlier entry says where",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := l.verify
			ex, err := ParseExport(bytes.NewReader(tt.data(t)))
			if err == nil {
				var older *Export
				if tt.older != nil {
					if older, err = ParseExport(bytes.NewReader(tt.older)); err != nil {
						t.Fatal(err)
					}
				}
				switch {
				case older == nil:
					_, err = Verify(ex, key, nil)
				case tt.oldCP:
					cp, cerr := OpenCheckpoint(older.Checkpoint, key)
					if cerr != nil {
						t.Fatal(cerr)
					}
					_, err = Verify(ex, key, cp)
				default:
					_, err = VerifyExtension(ex, key, older)
				}
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}
