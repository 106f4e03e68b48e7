package audit

// maxSearch bounds the forensic search for an inserted entry: trying every
// position costs time quadratic in the range a signed root vouches for.
const maxSearch = 4096

// rootMismatch reports entries whose chain is intact but that do not match
// the signed checkpoint cp, found at position at. For an insertion it tries
// to find the inserted entry exactly; otherwise it reports the range of
// entries that no signature vouches for.
func (v *verifier) rootMismatch(cp *Checkpoint, k Kind, at uint64, detail string) error {
	if k == KindInserted {
		if j, ok := v.findInsertion(cp); ok {
			return v.fail(j, KindInserted, "%s; without entry %d the rest matches the signed root of tree size %d", detail, j, cp.Size)
		}
	}
	return &VerifyError{Seq: v.vouched, End: max(at, v.vouched+1), Kind: k,
		Detail: detail + " (the hash chain was recomputed, so only the signed root shows it)"}
}

// findInsertion looks for the single position j whose removal (with the
// later entries renumbered and re-chained as they were before the
// insertion) makes the first cp.Size entries hash to cp.Root.
func (v *verifier) findInsertion(cp *Checkpoint) (uint64, bool) {
	ex := v.ex
	size := cp.Size
	have := ex.From + uint64(len(ex.Entries))
	if size < v.vouched || size >= have || size-v.vouched > maxSearch || uint64(len(v.leaves)) < size-ex.From {
		return 0, false
	}
	base := fringe{n: ex.From, hashes: append([]Hash(nil), ex.Fringe...)}
	for p := ex.From; p < v.vouched; p++ {
		base.push(v.leaves[p-ex.From], nil)
	}
	var canon []byte
	for j := v.vouched; j <= size; j++ {
		f := base.clone()
		prev := ex.PrevHash
		if j > ex.From {
			prev = ex.Entries[j-1-ex.From].Hash
		}
		for q := j; q < size; q++ {
			e := ex.Entries[q+1-ex.From] // the entry logged as q, renumbered by the insertion
			e.Seq = q
			canon = e.AppendCanonical(canon[:0])
			h := ChainHash(prev, canon)
			f.push(LeafHash(canon, h), nil)
			prev = h
		}
		if f.root() == cp.Root {
			return j, true
		}
		if j < size {
			base.push(v.leaves[j-ex.From], nil)
		}
	}
	return 0, false
}

// FirstDifference returns the first sequence number at which two exports
// disagree (an entry present in both whose hash differs). Verify can only say
// that a newer export does not extend an older checkpoint; with the older
// export at hand this names the first rewritten entry.
func FirstDifference(older, newer *Export) (uint64, bool) {
	byNew := make(map[uint64]Hash, len(newer.Entries))
	for _, e := range newer.Entries {
		byNew[e.Seq] = e.Hash
	}
	for _, e := range older.Entries {
		if h, ok := byNew[e.Seq]; ok && h != e.Hash {
			return e.Seq, true
		}
	}
	return 0, false
}
