package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// auditCLI is a test-only driver for the verbs jitctl will wrap around this
// package (jitctl audit export|verify|prove|check-proof). It shows how each
// maps onto the library; the real CLI comes with the issuer.
func auditCLI(l *Log, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: audit export|verify|prove|check-proof ...")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		from   = fs.Uint64("from", 0, "first sequence number")
		to     = fs.Uint64("to", math.MaxUint64, "end of the range (exclusive)")
		out    = fs.String("out", "", "output file")
		key    = fs.String("key", "", "audit public key file")
		older  = fs.String("older", "", "older export to check the new one extends")
		seq    = fs.Uint64("seq", 0, "entry to prove")
		bundle = fs.String("bundle", "", "proof bundle file")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	switch args[0] {
	case "export":
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		if err := l.Export(ctx, f, *from, *to); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case "verify":
		v, err := ReadVerifier(*key)
		if err != nil {
			return err
		}
		ex, err := readExport(fs.Arg(0))
		if err != nil {
			return err
		}
		var old *Export
		var oldCP *Checkpoint
		if *older != "" {
			if old, err = readExport(*older); err != nil {
				return err
			}
			if _, err := Verify(old, v, nil); err != nil {
				return fmt.Errorf("older export: %w", err)
			}
			if oldCP, err = OpenCheckpoint(old.Checkpoint, v); err != nil {
				return err
			}
		}
		res, err := Verify(ex, v, oldCP)
		var ve *VerifyError
		if errors.As(err, &ve) && ve.Kind == KindNotExtension && old != nil {
			if s, ok := FirstDifference(old, ex); ok {
				return fmt.Errorf("%w; first rewritten entry: %d", err, s)
			}
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res)
		return nil
	case "prove":
		cp, err := l.Sign(ctx)
		if err != nil {
			return err
		}
		p, err := l.ProveInclusion(*seq, cp.Size)
		if err != nil {
			return err
		}
		e, err := l.Entry(*seq)
		if err != nil {
			return err
		}
		ex := &Export{Origin: cp.Origin, From: e.Seq, To: e.Seq + 1, PrevHash: e.PrevHash, Entries: []Entry{e}, Checkpoint: cp.Note}
		var entryLines bytes.Buffer
		if _, err := ex.WriteTo(&entryLines); err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(proofBundle{Export: entryLines.String(), Proof: p})
	case "check-proof":
		v, err := ReadVerifier(*key)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(*bundle)
		if err != nil {
			return err
		}
		var b proofBundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return err
		}
		ex, err := ParseExport(strings.NewReader(b.Export))
		if err != nil {
			return err
		}
		cp, err := OpenCheckpoint(ex.Checkpoint, v)
		if err != nil {
			return err
		}
		if len(ex.Entries) != 1 {
			return errors.New("bundle must hold one entry")
		}
		if err := CheckInclusion(b.Proof, cp, &ex.Entries[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "OK: entry %d is in the log of %d entries, root %s\n", ex.Entries[0].Seq, cp.Size, cp.Root)
		return nil
	}
	return fmt.Errorf("unknown verb %q", args[0])
}

// proofBundle is what "prove" prints: the entry (as a one-entry export with
// the checkpoint) and its inclusion proof.
type proofBundle struct {
	Export string           `json:"export"`
	Proof  tlog.RecordProof `json:"proof"`
}

func readExport(path string) (*Export, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseExport(f)
}

func TestCLIDriver(t *testing.T) {
	l := newTestLog(t, func(c *Config) { c.CheckpointEvery = 10 })
	appendN(t, l.Log, 0, 25)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	_, vkey := testKeyStrings(t)
	if err := os.WriteFile(path("audit.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := auditCLI(l.Log, args, &out)
		return strings.TrimSpace(out.String()), err
	}

	if _, err := run("export", "-out", path("old.jsonl")); err != nil {
		t.Fatal(err)
	}
	appendN(t, l.Log, 25, 10)
	if _, err := run("export", "-out", path("new.jsonl")); err != nil {
		t.Fatal(err)
	}
	cp, _ := l.Latest()
	tests := []struct {
		name string
		args []string
		want string
		fail bool
	}{
		{"verify", []string{"verify", "-key", path("audit.pub"), path("new.jsonl")}, fmt.Sprintf("OK: %d entries, root %s", cp.Size, cp.Root), false},
		{"verify extension", []string{"verify", "-key", path("audit.pub"), "-older", path("old.jsonl"), path("new.jsonl")}, "OK: ", false},
		{"verify a range", []string{"verify", "-key", path("audit.pub"), path("old.jsonl")}, "OK: 27 entries", false},
		{"missing key", []string{"verify", "-key", path("nope.pub"), path("new.jsonl")}, "no such file", true},
		{"unknown verb", []string{"shred"}, "unknown verb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if (err != nil) != tt.fail {
				t.Fatalf("err = %v, want failure %v", err, tt.fail)
			}
			got := out
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("output %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("verify a tampered export", func(t *testing.T) {
		raw, _ := os.ReadFile(path("new.jsonl"))
		ls := lines(raw)
		ls[1+7] = strings.Replace(ls[1+7], "OPS-7", "OPS-8", 1)
		os.WriteFile(path("bad.jsonl"), join(ls), 0o644)
		_, err := run("verify", "-key", path("audit.pub"), path("bad.jsonl"))
		if err == nil || !strings.Contains(err.Error(), "seq 7: edited") {
			t.Fatalf("err = %v, want seq 7 edited", err)
		}
	})

	t.Run("prove and check offline", func(t *testing.T) {
		out, err := run("prove", "-seq", "13")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path("proof.json"), []byte(out), 0o644)
		out, err = run("check-proof", "-key", path("audit.pub"), "-bundle", path("proof.json"))
		if err != nil || !strings.HasPrefix(out, "OK: entry 13 is in the log") {
			t.Fatalf("check-proof: %q, %v", out, err)
		}
		forged := strings.Replace(string(mustRead(t, path("proof.json"))), "req-12", "req-99", 1)
		os.WriteFile(path("forged.json"), []byte(forged), 0o644)
		if _, err := run("check-proof", "-key", path("audit.pub"), "-bundle", path("forged.json")); err == nil {
			t.Fatal("a forged entry passed check-proof")
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
