package jitctl

import (
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/tlog"
)

// proveJSON is the -o json output of audit prove.
type proveJSON struct {
	File     string         `json:"file"`
	Seq      uint64         `json:"seq"`
	Entry    proveEntryJSON `json:"entry"`
	LeafHash string         `json:"leaf_hash"`
	TreeSize uint64         `json:"tree_size"` // the tree the inclusion proof is for
	Root     string         `json:"root"`
	Proof    []string       `json:"proof"` // inclusion proof, base64 hashes
	// Checkpoint is the export's signed checkpoint; when its size is larger
	// than tree_size, consistency_proof shows that the tree of tree_size is
	// a prefix of it.
	Checkpoint       *checkpointJSON `json:"checkpoint"`
	ConsistencyProof []string        `json:"consistency_proof"`
}

type proveEntryJSON struct {
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Subject string            `json:"subject"`
	Details map[string]string `json:"details"`
	Hash    string            `json:"hash"`
}

func (a *app) auditProveCommand() *cobra.Command {
	var in auditInputs
	var seq uint64
	cmd := &cobra.Command{
		Use:   "prove FILE --seq N --key AUDIT_PUB_FILE",
		Short: "Prove offline that entry N is in an export's signed Merkle tree",
		Long: `Verify the export (as "audit verify" does), then build the RFC 6962
inclusion proof of entry --seq in the export's Merkle tree from the export's
own entries, check it, and print it. When the export ends before its signed
checkpoint, the export's consistency proof links the two trees.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			ex, key, _, err := in.load(file)
			if err != nil {
				return err
			}
			res, err := audit.Verify(ex, key, nil)
			if err != nil {
				return fmt.Errorf("%s does not verify, so nothing in it can be proved: %w", file, err)
			}
			out, err := proveEntry(ex, res, seq)
			if err != nil {
				return err
			}
			out.File = file
			if a.json() {
				return writeJSON(a.stdout, out)
			}
			printProof(a, out)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&seq, "seq", 0, "sequence number of the entry to prove (required)")
	_ = cmd.MarkFlagRequired("seq")
	in.register(cmd, false)
	return cmd
}

// proveEntry builds and checks the inclusion proof of entry seq in the
// tree of the export's first To entries, whose root Verify computed (res).
//
// The audit package proves inclusion only from the live log
// (Log.ProveInclusion); offline, the proof is built here from the export
// with tlog: leaves [From, To) are the entries' leaf hashes and the tree
// of [0, From) is the header's fringe.
func proveEntry(ex *audit.Export, res *audit.Result, seq uint64) (*proveJSON, error) {
	if seq < ex.From || seq >= ex.To {
		return nil, fmt.Errorf("entry %d is not in this export, which holds entries [%d, %d)", seq, ex.From, ex.To)
	}
	t := newExportTree(ex)
	proof, err := tlog.ProveRecord(int64(ex.To), int64(seq), t)
	if err != nil {
		return nil, fmt.Errorf("proving entry %d: %w", seq, err)
	}
	e := &ex.Entries[seq-ex.From]
	tree := &audit.Checkpoint{Origin: ex.Origin, Size: ex.To, Root: res.Root}
	if err := audit.CheckInclusion(proof, tree, e); err != nil {
		return nil, err
	}
	out := &proveJSON{
		Seq: seq, LeafHash: e.LeafHash().String(), TreeSize: ex.To, Root: res.Root.String(),
		Proof: hashStrings(proof), Checkpoint: cpJSON(res.Checkpoint), ConsistencyProof: hashStrings(ex.Proof),
		Entry: proveEntryJSON{Time: e.Time, Actor: e.Actor, Action: string(e.Action), Subject: e.Subject,
			Details: e.Details, Hash: e.Hash.String()},
	}
	if out.Entry.Details == nil {
		out.Entry.Details = map[string]string{}
	}
	return out, nil
}

func hashStrings(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

func printProof(a *app, p *proveJSON) {
	w := a.stdout
	e := p.Entry
	subject := ""
	if e.Subject != "" {
		subject = " on " + e.Subject
	}
	fmt.Fprintf(w, "entry %d: %s by %s%s at %s\n", p.Seq, e.Action, e.Actor, subject, e.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "entry hash: %s\nleaf hash:  %s\n", e.Hash, p.LeafHash)
	fmt.Fprintf(w, "tree:       size %d, root %s\n", p.TreeSize, p.Root)
	fmt.Fprintf(w, "inclusion proof (%d hashes):\n", len(p.Proof))
	for _, h := range p.Proof {
		fmt.Fprintf(w, "  %s\n", h)
	}
	cp := p.Checkpoint
	fmt.Fprintf(w, "checkpoint: %s, size %d, root %s, signed at %s\n", cp.Origin, cp.Size, cp.Root, cp.Time.Format(time.RFC3339))
	if cp.Size != p.TreeSize {
		fmt.Fprintf(w, "consistency proof, tree %d to %d (%d hashes):\n", p.TreeSize, cp.Size, len(p.ConsistencyProof))
		for _, h := range p.ConsistencyProof {
			fmt.Fprintf(w, "  %s\n", h)
		}
	}
	fmt.Fprintf(w, "OK: entry %d is in the tree of size %d signed by the audit key\n", p.Seq, cp.Size)
}

// exportTree serves the hashes of the Merkle tree over an export's first To
// entries as a tlog.HashReader: the perfect subtrees of [0, From) come from
// the header's fringe, everything else is computed from the entries.
type exportTree struct {
	from, to uint64
	leaves   []tlog.Hash // leaf From+i
	known    map[[2]int64]tlog.Hash
}

func newExportTree(ex *audit.Export) *exportTree {
	t := &exportTree{from: ex.From, to: ex.To, known: map[[2]int64]tlog.Hash{}}
	for i := range ex.Entries {
		t.leaves = append(t.leaves, ex.Entries[i].LeafHash())
	}
	// The fringe lists the subtrees of the binary decomposition of From,
	// largest first.
	lo, k := uint64(0), 0
	for level := 63; level >= 0 && k < len(ex.Fringe); level-- {
		if ex.From&(1<<level) != 0 {
			t.known[[2]int64{int64(level), int64(lo >> level)}] = ex.Fringe[k]
			lo += 1 << level
			k++
		}
	}
	return t
}

// ReadHashes implements tlog.HashReader.
func (t *exportTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		h, err := t.node(level, n)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// node returns the hash of the perfect subtree of 2^level leaves starting
// at leaf n<<level.
func (t *exportTree) node(level int, n int64) (tlog.Hash, error) {
	key := [2]int64{int64(level), n}
	if h, ok := t.known[key]; ok {
		return h, nil
	}
	lo := uint64(n) << level
	hi := lo + 1<<level
	switch {
	case hi > t.to:
		return tlog.Hash{}, fmt.Errorf("tree node %d/%d is past the export's end %d", level, n, t.to)
	case hi <= t.from:
		return tlog.Hash{}, fmt.Errorf("tree node %d/%d lies before the export's start %d and is not in its fringe", level, n, t.from)
	case level == 0:
		return t.leaves[lo-t.from], nil
	}
	l, err := t.node(level-1, 2*n)
	if err != nil {
		return tlog.Hash{}, err
	}
	r, err := t.node(level-1, 2*n+1)
	if err != nil {
		return tlog.Hash{}, err
	}
	h := tlog.NodeHash(l, r)
	t.known[key] = h
	return h, nil
}
