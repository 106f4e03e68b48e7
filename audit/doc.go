// Package audit is jitgrant's audit log: append-only, hash-chained, with a
// Merkle tree and signed checkpoints, stored in Badger next to the issuer's
// state, exportable as JSON Lines and verifiable offline.
//
// # Contract
//
//   - Entries are numbered from 0 without gaps. An entry commits in the same
//     Badger transaction as the state change it records (Log.Append with a
//     change function; Log.AppendAll when one change is recorded by several
//     consecutive entries), so both happen or neither does; if the entry
//     cannot be written, the change fails (fail closed). A nil error from Append
//     means the entry is durable (synced), an error means nothing was
//     written.
//   - Each entry's Hash is SHA-256(PrevHash || canonical encoding), with an
//     all-zero PrevHash for entry 0.
//   - The entries are also the leaves of an RFC 6962 Merkle tree
//     (golang.org/x/mod/sumdb/tlog): leaf i is tlog.RecordHash(canonical ||
//     Hash) of entry i. Inclusion proofs (Log.ProveInclusion,
//     CheckInclusion) and consistency proofs (Log.ProveConsistency,
//     CheckConsistency) work on it.
//   - Checkpoints (tree size, root hash, time) are signed with an Ed25519
//     audit key in the signed-note format (golang.org/x/mod/sumdb/note)
//     every Config.CheckpointEvery entries or Config.CheckpointInterval, on
//     demand (Log.Sign, Log.Export) and at Close. The periodic ones are also
//     recorded in the log as ActionCheckpoint entries (details tree_size,
//     root and note), which lets a verifier localize tampering to the stretch
//     between two of them.
//   - An export (Log.Export) holds a range of entries and a signed checkpoint
//     covering it. Verify recomputes chain, tree and signatures offline and
//     names the first bad sequence number and what is wrong (a *VerifyError
//     with a Kind), or reports "OK: N entries, root <hash>".
//
// # Canonical encoding
//
// The bytes that are hashed for an entry are, in order (integers big-endian,
// str = uint32 length followed by the UTF-8 bytes):
//
//	"JGAUDIT1"            8 bytes, format tag
//	seq                   uint64
//	time                  int64, Unix nanoseconds (UTC)
//	actor                 str (a SPIFFE ID)
//	action                str (e.g. "grant.issued")
//	subject               str (request or grant ID, may be empty)
//	len(details)          uint32
//	key, value            str, str; repeated, keys in increasing byte order
//
// There is exactly one encoding per entry. testdata/canonical.golden pins the
// bytes for a sample entry (go test -run TestCanonicalGolden -update
// regenerates it).
//
// # Storage
//
// The log shares a Badger database (see internal/kv) with its caller and
// keeps to its own key prefix P (Config.Prefix, default "a/"):
//
//	P "e" seq      -> 0x01 || prev hash || hash || canonical encoding
//	P "t" seq      -> the tlog hashes stored with leaf seq (tlog.StoredHashes)
//	P "c" size     -> signed checkpoint note of the tree of that size
//
// with seq and size as 8-byte big-endian numbers, so keys iterate in order.
// The head of the log is the last "e" key; nothing else needs rewriting per
// append, so entries never conflict with each other. The tree hashes of
// levels 6 and up (one per 32 entries) are also kept in memory once written
// or read, so that a proof reads at most six hashes from Badger once the
// log is warm. Opening a log reads the last entry, the last checkpoint and
// the O(log n) tree hashes of the fringe and the checkpoint's root, never
// the history.
//
// # Metrics
//
// Log.Stats returns counters and histograms (append latency, group size,
// checkpoint age by the log's clock); NewCollector exposes them as a
// prometheus.Collector for the daemon's registry.
//
// # Group commit
//
// One writer goroutine appends. It takes every Append waiting (up to
// Config.MaxGroup), runs their change functions in order inside one Badger
// transaction, each on a staging Tx whose writes are kept apart and applied
// only if its function returns nil, numbers the surviving entries
// consecutively, writes them with their tree hashes and commits once with
// sync. A change that fails drops only its own entry; a failed commit fails
// the whole group. With Config.CommitDelay set, the writer first waits that
// long for more appends when the previous group held more than one. Details
// on Log.Append and in writer.go.
//
// # Export format
//
// JSON Lines, UTF-8, one object per line:
//
//	{"format":"jitgrant-audit-export/v1","origin":"...","from":0,"to":2,"prev_hash":"<base64>","fringe":[]}
//	{"seq":0,"time":"2026-01-02T03:04:05.123456789Z","actor":"spiffe://...","action":"request.created","subject":"r-1","details":{"reason":"..."},"prev_hash":"<base64>","hash":"<base64>"}
//	{"seq":1,...}
//	{"checkpoint":"<signed note>","proof":["<base64>",...]}
//
// The header's prev_hash is the hash of entry from-1 and fringe the roots of
// the perfect subtrees covering entries [0, from), so that a range not
// starting at 0 can still be checked against the tree. The last line's proof
// is a consistency proof from the tree of size to up to the checkpoint's
// size, when that is larger. ParseExport is strict (unknown, duplicate or
// missing fields, wrong types and over-long lines are errors naming the
// line).
package audit
