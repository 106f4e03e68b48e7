package jitctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
)

func (a *app) auditCommand() *cobra.Command {
	return groupCommand("audit", "Export the audit log, and verify and prove exports offline",
		a.auditExportCommand(), a.auditVerifyCommand(), a.auditProveCommand())
}

// exportJSON is the -o json output of audit export --out.
type exportJSON struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
}

func (a *app) auditExportCommand() *cobra.Command {
	var from, to uint64
	var out string
	cmd := &cobra.Command{
		Use:   "export [--from N] [--to N] [--out FILE]",
		Short: "Export the audit log as JSON Lines with a signed checkpoint (auditors)",
		Long: `Stream entries [--from, --to) of the audit log (--to 0: to the end) with a
signed checkpoint to --out, or to standard output. Needs the export_audit
permission. Check the file offline with "jitctl audit verify".`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != 0 && to < from {
				return cli.Usage(fmt.Errorf("--to %d is before --from %d", to, from))
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				if out == "" {
					_, err := a.export(cmd.Context(), c, from, to, a.stdout)
					return err
				}
				n, err := a.exportFile(cmd.Context(), c, from, to, out)
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, exportJSON{File: out, Bytes: n})
				}
				fmt.Fprintf(a.stdout, "wrote %s (%d bytes)\n", out, n)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&from, "from", 0, "first sequence number")
	f.Uint64Var(&to, "to", 0, "one past the last sequence number (0: the end of the log)")
	f.StringVar(&out, "out", "", "write to this file (0600) instead of standard output")
	return cmd
}

// export streams ExportAudit to w and returns the bytes written.
func (a *app) export(ctx context.Context, c *client, from, to uint64, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.ExportAudit(ctx, &pb.ExportAuditRequest{From: from, To: to})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		m, err := w.Write(chunk.GetData())
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
}

// exportFile exports to a temporary file renamed to path once complete.
func (a *app) exportFile(ctx context.Context, c *client, from, to uint64, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := a.export(ctx, c, from, to, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, err
	}
	return n, nil
}

// verifyJSON is the -o json output of audit verify.
type verifyJSON struct {
	File       string          `json:"file"`
	OK         bool            `json:"ok"`
	Entries    int             `json:"entries"`
	From       uint64          `json:"from"`
	To         uint64          `json:"to"`
	Root       string          `json:"root"` // base64 Merkle tree hash of the first To entries
	Checkpoint *checkpointJSON `json:"checkpoint"`
	Error      *verifyErrJSON  `json:"error"` // the first problem, when not OK
}

type checkpointJSON struct {
	Origin string    `json:"origin"`
	Size   uint64    `json:"size"`
	Root   string    `json:"root"`
	Time   time.Time `json:"time"`
}

type verifyErrJSON struct {
	Seq     uint64 `json:"seq"`
	End     uint64 `json:"end"`  // the bad range is [seq, end)
	Kind    string `json:"kind"` // edited, missing, reordered, inserted, truncated, bad signature, not an extension, malformed
	Message string `json:"message"`
}

func cpJSON(cp *audit.Checkpoint) *checkpointJSON {
	if cp == nil {
		return nil
	}
	return &checkpointJSON{Origin: cp.Origin, Size: cp.Size, Root: cp.Root.String(), Time: cp.Time}
}

// auditInputs are the files audit verify and prove read.
type auditInputs struct {
	keyFile   string
	olderFile string
}

func (in *auditInputs) register(cmd *cobra.Command, older bool) {
	cmd.Flags().StringVar(&in.keyFile, "key", "", "the audit public key (audit.pub in jitd's data directory) (required)")
	_ = cmd.MarkFlagRequired("key")
	if older {
		cmd.Flags().StringVar(&in.olderFile, "older-checkpoint", "", "a checkpoint (signed note) or an older export: check that this export extends it")
	}
}

// older is what --older-checkpoint gave: a checkpoint, and the export it
// came from when it was one.
type older struct {
	cp *audit.Checkpoint
	ex *audit.Export // nil for a bare checkpoint note
}

// load reads the export, the key and the older checkpoint. A malformed
// export is returned as a *audit.ParseError; one cut short also unwraps to a
// *audit.VerifyError.
func (in *auditInputs) load(file string) (*audit.Export, note.Verifier, *older, error) {
	key, err := audit.ReadVerifier(in.keyFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--key: %w", err)
	}
	var old *older
	if in.olderFile != "" {
		if old, err = readCheckpoint(in.olderFile, key); err != nil {
			return nil, nil, nil, err
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	ex, err := audit.ParseExport(f)
	if err != nil {
		return nil, nil, nil, err
	}
	return ex, key, old, nil
}

// readCheckpoint reads a signed checkpoint note, or an export and its
// checkpoint.
func readCheckpoint(path string, key note.Verifier) (*older, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--older-checkpoint: %w", err)
	}
	msg := b
	var ex *audit.Export
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		if ex, err = audit.ParseExport(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("--older-checkpoint %s: %w", path, err)
		}
		msg = ex.Checkpoint
	}
	cp, err := audit.OpenCheckpoint(msg, key)
	if err != nil {
		return nil, fmt.Errorf("--older-checkpoint %s: %w", path, err)
	}
	return &older{cp: cp, ex: ex}, nil
}

func (a *app) auditVerifyCommand() *cobra.Command {
	var in auditInputs
	cmd := &cobra.Command{
		Use:   "verify FILE --key AUDIT_PUB_FILE",
		Short: "Check an export offline: chain, Merkle tree and signatures",
		Long: `Check an audit export offline against the audit public key: sequence numbers,
the hash chain, the checkpoints recorded in the log, and the Merkle tree
against the export's signed checkpoint; with --older-checkpoint, also that
the log extends an earlier checkpoint. Prints "OK: N entries, root <hash>",
or the first bad sequence number and what is wrong with it (edited, missing,
inserted, reordered, truncated, bad signature, not an extension), and then
exits 1. Given an older export rather than only its checkpoint,
--older-checkpoint also names the entry where the two logs diverge.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			ex, key, old, err := in.load(file)
			var pe *audit.ParseError
			var ve *audit.VerifyError
			switch {
			case errors.As(err, &ve):
				return a.verifyFailed(file, &verifyErrJSON{Seq: ve.Seq, End: ve.End, Kind: ve.Kind.String(), Message: ve.Error()})
			case errors.As(err, &pe):
				e := &verifyErrJSON{Kind: "malformed", Message: pe.Error()}
				if pe.Entry {
					e.Seq, e.End = pe.Seq, pe.Seq+1
				}
				return a.verifyFailed(file, e)
			case err != nil:
				return err
			}
			var res *audit.Result
			switch {
			case old == nil:
				res, err = audit.Verify(ex, key, nil)
			case old.ex != nil:
				res, err = audit.VerifyExtension(ex, key, old.ex)
			default:
				res, err = audit.Verify(ex, key, old.cp)
			}
			switch {
			case errors.As(err, &ve):
				return a.verifyFailed(file, &verifyErrJSON{Seq: ve.Seq, End: ve.End, Kind: ve.Kind.String(), Message: ve.Error()})
			case err != nil:
				return a.verifyFailed(file, &verifyErrJSON{Kind: "error", Message: err.Error()})
			}
			if a.json() {
				return writeJSON(a.stdout, verifyJSON{File: file, OK: true, Entries: res.Entries, From: res.From, To: res.To,
					Root: res.Root.String(), Checkpoint: cpJSON(res.Checkpoint)})
			}
			fmt.Fprintln(a.stdout, res.String())
			return nil
		},
	}
	in.register(cmd, true)
	return cmd
}

// verifyFailed reports a bad export and returns a reportedError.
func (a *app) verifyFailed(file string, e *verifyErrJSON) error {
	msg := strings.TrimPrefix(strings.TrimPrefix(e.Message, "audit: "), "verify: ")
	failed := reported(ExitFailure, fmt.Sprintf("audit verify: %s: %s", file, msg))
	if a.json() {
		if err := writeJSON(a.stdout, verifyJSON{File: file, Error: e}); err != nil {
			return err
		}
		return failed
	}
	fmt.Fprintf(a.stdout, "FAIL: %s: %s\n", file, msg)
	return failed
}
