package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Kind says what is wrong with an export.
type Kind int

// The kinds of VerifyError.
const (
	// KindEdited: an entry's contents differ from what was logged.
	KindEdited Kind = iota + 1
	// KindMissing: an entry was removed.
	KindMissing
	// KindReordered: entries are out of order.
	KindReordered
	// KindInserted: an entry that was never logged was added.
	KindInserted
	// KindTruncated: the export stops before the end its checkpoint covers.
	KindTruncated
	// KindBadSignature: a checkpoint is not signed by the audit key.
	KindBadSignature
	// KindNotExtension: the export's log does not extend the older
	// checkpoint's log.
	KindNotExtension
)

var kindNames = map[Kind]string{
	KindEdited: "edited", KindMissing: "missing", KindReordered: "reordered",
	KindInserted: "inserted", KindTruncated: "truncated",
	KindBadSignature: "bad signature", KindNotExtension: "not an extension",
}

// String returns the kind as Verify reports it ("edited", "missing", ...).
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// VerifyError reports the first problem Verify found.
//
// When the problem shows in the hash chain or the sequence numbers, Seq is
// the exact sequence number and End is Seq+1. When the chain is intact but
// does not match a signed root (someone rewrote entries and recomputed the
// chain), the signature only vouches for a whole range: Verify then narrows
// it down where it can (a single inserted entry is found exactly) and
// otherwise reports the range [Seq, End) of entries that no valid signature
// vouches for.
type VerifyError struct {
	Seq, End uint64
	Kind     Kind
	Detail   string

	fork bool // the export's root differs from an older checkpoint's
}

// Error reads "audit: verify: seq N: <kind>: <detail>", with the range when
// the problem is known only to lie within one.
func (e *VerifyError) Error() string {
	if e.End > e.Seq+1 {
		return fmt.Sprintf("audit: verify: seq %d (in [%d, %d)): %s: %s", e.Seq, e.Seq, e.End, e.Kind, e.Detail)
	}
	return fmt.Sprintf("audit: verify: seq %d: %s: %s", e.Seq, e.Kind, e.Detail)
}

// Result is a successful verification.
type Result struct {
	// Entries is the number of entries checked, [From, To).
	Entries  int
	From, To uint64
	// Root is the Merkle tree hash of the first To entries.
	Root Hash
	// Checkpoint is the export's (verified) checkpoint.
	Checkpoint *Checkpoint
}

// String returns "OK: N entries, root <hash>", noting a partial range or a
// larger checkpoint when there is one.
func (r *Result) String() string {
	s := fmt.Sprintf("OK: %d entries, root %s", r.Entries, r.Root)
	if r.From > 0 || r.Checkpoint.Size != r.To {
		s += fmt.Sprintf(" (entries [%d, %d) of a log of %d entries, root %s)", r.From, r.To, r.Checkpoint.Size, r.Checkpoint.Root)
	}
	return s
}

// verifier carries the state of one Verify run.
type verifier struct {
	ex      *Export
	key     note.Verifier
	fr      fringe
	prev    Hash
	vouched uint64          // entries below this are vouched for by a checked signature
	roots   map[uint64]Hash // tree roots at sizes of interest
	leaves  []Hash
	canon   []byte
}

// Verify checks an export offline against the audit public key: sequence
// numbers, the hash chain, every checkpoint recorded in the log, the Merkle
// tree against the export's signed checkpoint and, if older is not nil, that
// the export's log extends older (a checkpoint from an earlier export,
// obtained with OpenCheckpoint; it must fall within [From, To] of the
// export). It returns a *VerifyError naming the first bad sequence number.
func Verify(ex *Export, key note.Verifier, older *Checkpoint) (*Result, error) {
	if ex == nil || key == nil {
		return nil, errors.New("audit: verify: nil export or key")
	}
	v := &verifier{ex: ex, key: key, prev: ex.PrevHash, vouched: ex.From, roots: map[uint64]Hash{}}
	if len(ex.Fringe) != bitsOnes(ex.From) {
		return nil, v.fail(ex.From, KindEdited, "the header's tree fringe does not fit its start")
	}
	v.fr = fringe{n: ex.From, hashes: append([]Hash(nil), ex.Fringe...)}
	cp, cpErr := OpenCheckpoint(ex.Checkpoint, key)
	if cpErr == nil {
		v.roots[cp.Size] = Hash{}
	}
	if older != nil {
		v.roots[older.Size] = Hash{}
	}
	if err := v.entries(); err != nil {
		return nil, err
	}
	if err := v.checkpoint(cp, cpErr); err != nil {
		return nil, err
	}
	if older != nil {
		if err := v.extends(older, cp); err != nil {
			return nil, err
		}
	}
	return &Result{Entries: len(ex.Entries), From: ex.From, To: ex.To, Root: v.roots[ex.To], Checkpoint: cp}, nil
}

// plain returns err's message without the package prefix.
func plain(err error) string { return strings.TrimPrefix(err.Error(), "audit: ") }

func nEntries(n uint64) string {
	if n == 1 {
		return "1 entry"
	}
	return strconv.FormatUint(n, 10) + " entries"
}

func bitsOnes(n uint64) int {
	c := 0
	for ; n != 0; n &= n - 1 {
		c++
	}
	return c
}

func (v *verifier) fail(seq uint64, k Kind, format string, args ...any) *VerifyError {
	return &VerifyError{Seq: seq, End: seq + 1, Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// entries walks the entries: sequence numbers, chain, tree, and the
// checkpoints the log recorded as entries.
func (v *verifier) entries() error {
	ex := v.ex
	v.leaves = make([]Hash, 0, len(ex.Entries))
	for i := range ex.Entries {
		e := &ex.Entries[i]
		want := ex.From + uint64(i)
		if e.Seq != want {
			return v.badSeq(i, want)
		}
		v.canon = e.AppendCanonical(v.canon[:0])
		hashOK := ChainHash(e.PrevHash, v.canon) == e.Hash
		if (!hashOK || e.PrevHash != v.prev) && i+1 < len(ex.Entries) && ex.Entries[i+1].Seq == e.Seq && v.chains(&ex.Entries[i+1]) {
			return v.fail(e.Seq, KindInserted, "an entry %d that is not in the hash chain comes before the logged entry %d", e.Seq, e.Seq)
		}
		if !hashOK {
			return v.badHash(e)
		}
		if e.PrevHash != v.prev {
			if i == 0 {
				return v.fail(e.Seq, KindEdited, "the entry does not chain to the header's prev_hash")
			}
			return v.fail(e.Seq-1, KindEdited, "entry %d does not chain to it: it was changed after %d was logged", e.Seq, e.Seq)
		}
		if _, ok := v.roots[e.Seq]; ok {
			v.roots[e.Seq] = v.fr.root()
		}
		if e.Action == ActionCheckpoint {
			if err := v.recorded(e); err != nil {
				return err
			}
		}
		leaf := LeafHash(v.canon, e.Hash)
		v.leaves = append(v.leaves, leaf)
		v.fr.push(leaf, nil)
		v.prev = e.Hash
	}
	end := ex.From + uint64(len(ex.Entries))
	if end < ex.To {
		return v.fail(end, KindTruncated, "entries [%d, %d) are missing: the export stops at %d but its header says it holds entries [%d, %d)", end, ex.To, end, ex.From, ex.To)
	}
	v.roots[end] = v.fr.root()
	return nil
}

// chains reports whether entry e follows the last checked entry in the hash
// chain and its hash matches its contents.
func (v *verifier) chains(e *Entry) bool {
	return e.PrevHash == v.prev && ChainHash(e.PrevHash, e.AppendCanonical(nil)) == e.Hash
}

// maxShift bounds how far badHash looks for renumbered entries.
const maxShift = 8

// badHash reports entry e, whose hash does not match its contents. When the
// hash matches the contents under another sequence number, entries were
// inserted or removed before it and the later ones renumbered: the first
// inserted or missing sequence number is the bad one.
func (v *verifier) badHash(e *Entry) error {
	shifted := *e
	for d := uint64(1); d <= maxShift; d++ {
		if e.Seq >= d && e.Seq-d >= v.ex.From {
			shifted.Seq = e.Seq - d
			if ChainHash(e.PrevHash, shifted.AppendCanonical(nil)) == e.Hash {
				at := e.Seq - d
				return v.fail(at, KindInserted, "%s inserted at %d: entry %d is the log's entry %d renumbered", nEntries(d), at, e.Seq, shifted.Seq)
			}
		}
		shifted.Seq = e.Seq + d
		if ChainHash(e.PrevHash, shifted.AppendCanonical(nil)) == e.Hash {
			return v.fail(e.Seq, KindMissing, "%s missing from %d: entry %d is the log's entry %d renumbered", nEntries(d), e.Seq, e.Seq, shifted.Seq)
		}
	}
	return v.fail(e.Seq, KindEdited, "the entry's hash does not match its contents")
}

// badSeq reports entry i, whose sequence number is not want.
func (v *verifier) badSeq(i int, want uint64) error {
	got := v.ex.Entries[i].Seq
	if got < want {
		return v.fail(got, KindInserted, "a second entry %d appears after entry %d", got, want-1)
	}
	for _, later := range v.ex.Entries[i+1:] {
		if later.Seq == want {
			return v.fail(want, KindReordered, "entry %d comes after entry %d", want, got)
		}
	}
	return v.fail(want, KindMissing, "entry %d is absent (next is %d)", want, got)
}

// recorded checks a checkpoint the log recorded as entry e: it must be
// signed by the key and match the tree of the entries before it.
func (v *verifier) recorded(e *Entry) error {
	cp, err := OpenCheckpoint([]byte(e.Details["note"]), v.key)
	if err != nil {
		if errors.Is(err, ErrBadSignature) {
			return v.fail(e.Seq, KindBadSignature, "recorded checkpoint: %s", plain(err))
		}
		return v.fail(e.Seq, KindEdited, "recorded checkpoint: %s", plain(err))
	}
	if e.Details["tree_size"] != strconv.FormatUint(cp.Size, 10) || e.Details["root"] != cp.Root.String() {
		return v.fail(e.Seq, KindEdited, "recorded checkpoint details differ from its signed note")
	}
	switch {
	case cp.Size < e.Seq:
		return v.rootMismatch(cp, KindInserted, e.Seq,
			fmt.Sprintf("%s more than the checkpoint recorded here signed", nEntries(e.Seq-cp.Size)))
	case cp.Size > e.Seq:
		return v.rootMismatch(cp, KindMissing, e.Seq,
			fmt.Sprintf("%s fewer than the checkpoint recorded here signed", nEntries(cp.Size-e.Seq)))
	case cp.Root != v.fr.root():
		return v.rootMismatch(cp, KindEdited, e.Seq, "entries before it do not match its signed root")
	}
	v.vouched = e.Seq
	return nil
}

// checkpoint checks the export's signed checkpoint against the tree.
func (v *verifier) checkpoint(cp *Checkpoint, cpErr error) error {
	ex := v.ex
	if cpErr != nil {
		if errors.Is(cpErr, ErrBadSignature) {
			return v.unvouched(KindBadSignature, "export checkpoint: %s", plain(cpErr))
		}
		return v.unvouched(KindEdited, "export checkpoint: %s", plain(cpErr))
	}
	if cp.Origin != ex.Origin {
		return v.unvouched(KindEdited, "header origin %q differs from the checkpoint's %q", ex.Origin, cp.Origin)
	}
	root := v.roots[ex.To]
	switch end := ex.From + uint64(len(ex.Entries)); {
	case end > ex.To:
		return v.rootMismatch(cp, KindInserted, end, fmt.Sprintf("the export has %s more than its header's range", nEntries(end-ex.To)))
	case cp.Size < ex.To:
		return v.rootMismatch(cp, KindInserted, ex.To, fmt.Sprintf("the export has %s more than its checkpoint covers", nEntries(ex.To-cp.Size)))
	case cp.Size == ex.To && root != cp.Root:
		return v.rootMismatch(cp, KindEdited, ex.To, "the entries do not match the checkpoint's root")
	case cp.Size > ex.To && ex.To > 0:
		if len(ex.Proof) == 0 {
			return v.fail(ex.To, KindTruncated, "the export stops at %d but its checkpoint covers %d entries", ex.To, cp.Size)
		}
		if err := tlog.CheckTree(ex.Proof, int64(cp.Size), cp.Root, int64(ex.To), root); err != nil {
			return v.unvouched(KindEdited, "the entries are not a prefix of the checkpoint's tree: %v", err)
		}
	}
	return nil
}

// extends checks that the export's log extends the older checkpoint.
func (v *verifier) extends(older, cp *Checkpoint) error {
	ex := v.ex
	switch {
	case older.Origin != cp.Origin:
		return fmt.Errorf("audit: verify: older checkpoint is of log %q, export of %q", older.Origin, cp.Origin)
	case older.Size > cp.Size:
		return &VerifyError{Seq: cp.Size, End: older.Size, Kind: KindNotExtension,
			Detail: fmt.Sprintf("the log shrank from %d to %d entries", older.Size, cp.Size)}
	case older.Size < ex.From || older.Size > ex.To:
		return fmt.Errorf("audit: verify: older checkpoint (size %d) is outside the export's range [%d, %d]", older.Size, ex.From, ex.To)
	}
	if older.Size > 0 && v.roots[older.Size] != older.Root {
		// The roots differ, but nothing signed says where;
		// VerifyExtension finds the entry when the older export is at hand.
		return &VerifyError{Seq: ex.From, End: older.Size, Kind: KindNotExtension, fork: true,
			Detail: fmt.Sprintf("the log diverges from the older checkpoint somewhere in entries [%d, %d): "+
				"the checkpoint alone cannot say where; the older export can", ex.From, older.Size)}
	}
	return nil
}

// unvouched reports a problem with a signature that should vouch for the
// entries not yet vouched for.
func (v *verifier) unvouched(k Kind, format string, args ...any) error {
	end := max(v.ex.To, v.vouched+1)
	return &VerifyError{Seq: v.vouched, End: end, Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// VerifyExtension is Verify with an older export in place of its checkpoint:
// the older export must verify, and the export must extend its checkpoint.
// When it does not, the *VerifyError (KindNotExtension) names the first
// sequence number at which the two logs diverge, or the range it lies in
// when the exports do not hold the entries that say.
func VerifyExtension(ex *Export, key note.Verifier, older *Export) (*Result, error) {
	if older == nil {
		return Verify(ex, key, nil)
	}
	old, err := Verify(older, key, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: the older export does not verify: %s", strings.TrimPrefix(err.Error(), "audit: verify: "))
	}
	res, err := Verify(ex, key, old.Checkpoint)
	var ve *VerifyError
	if errors.As(err, &ve) && ve.fork {
		return nil, divergence(older, ex, old.Checkpoint.Size)
	}
	return res, err
}

// divergence finds where newer's log departs from older's, whose
// checkpoint covers size entries: the first leaf that differs, found by
// comparing the tree hashes where both exports begin to overlap and then
// their leaves one by one.
func divergence(older, newer *Export, size uint64) *VerifyError {
	lo := max(older.From, newer.From)
	hi := min(older.To, newer.To, size)
	fail := func(seq, end uint64, format string, args ...any) *VerifyError {
		return &VerifyError{Seq: seq, End: max(end, seq+1), Kind: KindNotExtension, Detail: fmt.Sprintf(format, args...)}
	}
	if lo > hi {
		return fail(hi, size, "the log diverges from the older checkpoint somewhere in entries [%d, %d): the exports hold no entries in common", hi, size)
	}
	oldLeaves, oldRoot := leavesFrom(older, lo, hi)
	newLeaves, newRoot := leavesFrom(newer, lo, hi)
	if oldRoot != newRoot {
		return fail(0, lo, "the log diverges from the older checkpoint before entry %d, the first entry both exports hold: an export from an earlier entry says where", lo)
	}
	for i := range oldLeaves {
		if oldLeaves[i] != newLeaves[i] {
			seq := lo + uint64(i)
			return fail(seq, seq+1, "the log diverges from the older checkpoint at %d: entries before %d match, entry %d differs from the one the older checkpoint signed", seq, seq, seq)
		}
	}
	return fail(hi, size, "the log diverges from the older checkpoint somewhere in entries [%d, %d): the entries before %d match; the older export stops there", hi, size, hi)
}

// leavesFrom returns the leaf hashes of ex's entries [lo, hi) and the tree
// hash of its first lo entries. ex holds [lo, hi) and has verified.
func leavesFrom(ex *Export, lo, hi uint64) ([]Hash, Hash) {
	f := fringe{n: ex.From, hashes: append([]Hash(nil), ex.Fringe...)}
	var canon []byte
	leaves := make([]Hash, 0, hi-lo)
	var root Hash
	for i := range ex.Entries {
		e := &ex.Entries[i]
		if e.Seq == lo {
			root = f.root()
		}
		if e.Seq >= hi {
			break
		}
		canon = e.AppendCanonical(canon[:0])
		leaf := LeafHash(canon, e.Hash)
		if e.Seq >= lo {
			leaves = append(leaves, leaf)
		}
		f.push(leaf, nil)
	}
	if lo == ex.From+uint64(len(ex.Entries)) {
		root = f.root()
	}
	return leaves, root
}
