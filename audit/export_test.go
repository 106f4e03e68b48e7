package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestExportRanges(t *testing.T) {
	l := newTestLog(t, func(c *Config) { c.CheckpointEvery = 7 })
	appendN(t, l.Log, 0, 40)
	size := l.Size()
	tests := []struct {
		name     string
		from, to uint64
		entries  int
	}{
		{"everything", 0, size, int(size)},
		{"to is capped", 0, size + 100, int(size)},
		{"prefix", 0, 13, 13},
		{"middle", 5, 29, 24},
		{"suffix", 16, size, int(size) - 16},
		{"empty at start", 0, 0, 0},
		{"empty in the middle", 9, 9, 0},
		{"single entry", 31, 32, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, raw := export(t, l.Log, tt.from, tt.to)
			if len(ex.Entries) != tt.entries || ex.From != tt.from {
				t.Fatalf("export has %d entries from %d, want %d from %d", len(ex.Entries), ex.From, tt.entries, tt.from)
			}
			if n := bytes.Count(raw, []byte("\n")); n != tt.entries+2 {
				t.Errorf("export has %d lines, want %d", n, tt.entries+2)
			}
			res, err := Verify(ex, l.verify, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Entries != tt.entries || res.Checkpoint.Size < ex.To {
				t.Errorf("Result %v", res)
			}
		})
	}
	t.Run("from past to", func(t *testing.T) {
		if err := l.Export(context.Background(), &bytes.Buffer{}, 10, 5); err == nil {
			t.Error("Export(10, 5) succeeded")
		}
	})
}

func TestExportIsJSONLines(t *testing.T) {
	l := newTestLog(t, nil)
	mustAppend(t, l.Log, Record{Actor: testUser, Action: ActionGrantIssued, Subject: "g-1",
		Details: map[string]string{"html": "<a&b>", "quote": `"\`, "nl": "a\nb", "uni": "é\u2028"}})
	_, raw := export(t, l.Log, 0, 1)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("line %d is not JSON: %v", i+1, err)
		}
	}
	ex, err := ParseExport(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if d := ex.Entries[0].Details; d["html"] != "<a&b>" || d["quote"] != `"\` || d["nl"] != "a\nb" || d["uni"] != "é\u2028" {
		t.Errorf("details did not survive: %q", d)
	}
}

// Lines of a small valid export, to break one at a time.
const (
	okHeader = `{"format":"jitgrant-audit-export/v1","origin":"o","from":0,"to":1,"prev_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","fringe":[]}`
	okEntry  = `{"seq":0,"time":"2026-01-02T03:04:05.5Z","actor":"spiffe://example.org/a","action":"grant.issued","subject":"g","details":{"k":"v"},"prev_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`
	okCP     = `{"checkpoint":"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n2026-01-02T03:04:05Z\n\n— k AAAA\n","proof":[]}`
)

func TestParseExportStrict(t *testing.T) {
	ok := okHeader + "\n" + okEntry + "\n" + okCP + "\n"
	if _, err := ParseExport(strings.NewReader(ok)); err != nil {
		t.Fatalf("valid export: %v", err)
	}
	// CR is JSON white space: an export that went through a Windows editor
	// still parses (its hashes do not depend on line endings).
	if _, err := ParseExport(strings.NewReader(strings.ReplaceAll(ok, "\n", "\r\n"))); err != nil {
		t.Fatalf("CRLF export: %v", err)
	}
	entry := func(old, new string) string {
		return okHeader + "\n" + strings.Replace(okEntry, old, new, 1) + "\n" + okCP + "\n"
	}
	tests := []struct {
		name  string
		input string
		line  int
		want  string
	}{
		{"empty input", "", 1, "empty export"},
		{"header only", okHeader + "\n", 2, "seq 0: truncated: the export ends after its header line"},
		{"wrong format", strings.Replace(ok, "export/v1", "export/v9", 1), 1, "format"},
		{"header unknown field", strings.Replace(ok, `"fringe":[]`, `"fringe":[],"extra":1`, 1), 1, `unknown field "extra"`},
		{"header missing field", strings.Replace(ok, `,"fringe":[]`, ``, 1), 1, `missing field "fringe"`},
		{"from past to", strings.Replace(ok, `"from":0`, `"from":5`, 1), 1, "past"},
		{"entry unknown field", entry(`"seq":0,`, `"seq":0,"x":1,`), 2, `unknown field "x"`},
		{"entry missing field", entry(`"subject":"g",`, ``), 2, `missing field "subject"`},
		{"entry duplicate field", entry(`"seq":0,`, `"seq":0,"seq":1,`), 2, `duplicate field "seq"`},
		{"seq is a string", entry(`"seq":0`, `"seq":"0"`), 2, `field "seq"`},
		{"seq is negative", entry(`"seq":0`, `"seq":-1`), 2, `field "seq"`},
		{"seq is fractional", entry(`"seq":0`, `"seq":0.5`), 2, `field "seq"`},
		{"seq with leading zero", entry(`"seq":0`, `"seq":01`), 2, `field "seq"`},
		{"seq too big", entry(`"seq":0`, `"seq":99999999999999999999`), 2, `field "seq"`},
		{"details not an object", entry(`{"k":"v"}`, `["k"]`), 2, `field "details"`},
		{"detail not a string", entry(`{"k":"v"}`, `{"k":1}`), 2, `field "details"`},
		{"detail key duplicated", entry(`{"k":"v"}`, `{"k":"v","k":"w"}`), 2, `duplicate field "k"`},
		{"time not UTC", entry(`05.5Z`, `05.5+01:00`), 2, "RFC 3339"},
		{"time not canonical", entry(`05.5Z`, `05.50Z`), 2, "RFC 3339"},
		{"bad hash", entry(`"hash":"AAAA`, `"hash":"!AAA`), 2, `field "hash"`},
		{"short hash", entry(`"hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="`, `"hash":"AAAA"`), 2, `field "hash"`},
		{"actor not SPIFFE", entry(`spiffe://example.org/a`, `alice`), 2, "SPIFFE"},
		{"lone surrogate", entry(`"g"`, `"\ud800"`), 2, "surrogate"},
		{"invalid UTF-8", entry(`"g"`, "\"\xff\""), 2, "UTF-8"},
		{"trailing garbage", entry(`="}`, `="}x`), 2, "trailing"},
		{"empty line", okHeader + "\n\n" + okEntry + "\n" + okCP + "\n", 2, "empty line"},
		{"checkpoint line unknown field", okHeader + "\n" + okEntry + "\n" + strings.Replace(okCP, `"proof"`, `"proofs"`, 1) + "\n", 3, `unknown field "proofs"`},
		{"huge line", okHeader + "\n" + strings.Repeat(" ", MaxLineSize+10) + "\n" + okCP + "\n", 2, "longer than"},
		{"not JSON", okHeader + "\n" + "hello\n" + okCP + "\n", 2, "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseExport(strings.NewReader(tt.input))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q (line %d), want line %d and %q", err, pe.Line, tt.line, tt.want)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) && !strings.HasPrefix(err.Error(), fmt.Sprintf("audit: export line %d", tt.line)) {
				t.Errorf("error %q does not start with the line", err)
			}
		})
	}
}

// TestParserAgreesWithEncodingJSON checks the hand-written JSON reader against
// encoding/json on strings with every kind of escape.
func TestParserAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\ncr\r", "\x01\x1f", "é", "日本", "😀", "\u2028\u2029", "<&>", "\x7f"} {
		b, _ := json.Marshal(s)
		p := jparser{b: b}
		got, err := p.str()
		if err != nil || got != s || p.end() != nil {
			t.Errorf("str(%s) = %q, %v; want %q", b, got, err, s)
		}
	}
	for _, in := range []string{`"\u00e9"`, `"\ud83d\ude00"`, `"\/"`, `"\b\f"`} {
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		p := jparser{b: []byte(in)}
		if got, err := p.str(); err != nil || got != want {
			t.Errorf("str(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzParseExport checks the parser's invariants on any input:
//
//   - input that does not parse fails with a *ParseError naming a line;
//   - input that parses re-encodes (Export.WriteTo) to bytes that parse to
//     the same Export, re-encode byte for byte the same, and verify exactly
//     as the input did: the encoding loses nothing Verify looks at;
//   - an export as Log.Export wrote it (the real seeds, unmodified)
//     re-encodes byte for byte to itself, and verifies.
func FuzzParseExport(f *testing.F) {
	// The seed corpus lives in testdata/fuzz/FuzzParseExport: real exports
	// (written by TestWriteFuzzSeeds) and broken variants.
	f.Add([]byte(okHeader + "\n" + okEntry + "\n" + okCP + "\n"))
	_, verifier := testKeys(f, "example.org/audit", 1)
	real := map[string]bool{}
	for _, data := range realExports(f) {
		f.Add(data)
		real[string(data)] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ex, err := ParseExport(bytes.NewReader(data))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error %v is not a *ParseError with a line", err)
			}
			if real[string(data)] {
				t.Fatalf("a real export does not parse: %v", err)
			}
			return
		}
		_, verr := Verify(ex, verifier, nil)
		var enc bytes.Buffer
		if _, err := ex.WriteTo(&enc); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		ex2, err := ParseExport(bytes.NewReader(enc.Bytes()))
		if err != nil {
			t.Fatalf("the re-encoded export does not parse: %v\n%s", err, enc.Bytes())
		}
		if !reflect.DeepEqual(ex, ex2) {
			t.Fatalf("the re-encoded export parses differently:\n%+v\n%+v", ex, ex2)
		}
		var enc2 bytes.Buffer
		if _, err := ex2.WriteTo(&enc2); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		if !bytes.Equal(enc.Bytes(), enc2.Bytes()) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc.Bytes(), enc2.Bytes())
		}
		if _, verr2 := Verify(ex2, verifier, nil); fmt.Sprint(verr) != fmt.Sprint(verr2) {
			t.Fatalf("Verify says %v of the input but %v of its re-encoding", verr, verr2)
		}
		if real[string(data)] {
			if verr != nil {
				t.Fatalf("Verify refuses a real export: %v", verr)
			}
			if !bytes.Equal(enc.Bytes(), data) {
				t.Fatalf("a real export does not re-encode to itself:\n%s\n%s", data, enc.Bytes())
			}
		}
		for i := range ex.Entries {
			_ = ex.Entries[i].AppendCanonical(nil)
		}
	})
}

// realExports returns exports as Log.Export writes them: a whole log with
// checkpoints, and a range from its middle. They are deterministic (fixed
// keys, a fake clock), so the corpus files made from them stay the same.
func realExports(t testing.TB) map[string][]byte {
	t.Helper()
	l := newTestLog(t, func(c *Config) { c.CheckpointEvery = 3 })
	appendN(t, l.Log, 0, 7)
	_, full := export(t, l.Log, 0, 100)
	_, part := export(t, l.Log, 3, 6)
	return map[string][]byte{"full": full, "range": part}
}

// TestWriteFuzzSeeds checks the fuzz seed corpus against real exports, and
// regenerates it when run with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	real := realExports(t)
	full, part := real["full"], real["range"]
	seeds := map[string][]byte{
		"full":        full,
		"range":       part,
		"truncated":   full[:len(full)/2],
		"crlf":        bytes.ReplaceAll(part, []byte("\n"), []byte("\r\n")),
		"dup-key":     bytes.Replace(part, []byte(`"seq":`), []byte(`"seq":1,"seq":`), 1),
		"escapes":     []byte(okHeader + "\n" + strings.Replace(okEntry, `"g"`, `"\ud83d\ude00\n\u0000"`, 1) + "\n" + okCP + "\n"),
		"header-only": []byte(okHeader + "\n"),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseExport")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != body {
			t.Errorf("%s is not the seed a real export makes (%v); run with -update", path, err)
		}
	}
}
