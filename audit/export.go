package audit

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// ExportFormat is the format line of an export's header.
const ExportFormat = "jitgrant-audit-export/v1"

// Export is a parsed export: a range [From, To) of entries plus what is needed
// to check them offline. See the package documentation for the format.
// Nothing in an Export is trusted until Verify has checked it.
type Export struct {
	// Origin is the log's origin line, as the header states it.
	Origin string
	// From and To delimit the exported sequence numbers, [From, To).
	From, To uint64
	// PrevHash is the hash of entry From-1 (zero when From is 0).
	PrevHash Hash
	// Fringe holds the roots of the perfect subtrees that make up the tree
	// of the first From entries, largest first (empty when From is 0).
	Fringe []Hash
	// Entries are the exported entries, in file order.
	Entries []Entry
	// Checkpoint is the signed note of a checkpoint of size >= To.
	Checkpoint []byte
	// Proof is the consistency proof from the tree of size To to the
	// checkpoint's tree (empty when the sizes are equal).
	Proof tlog.TreeProof
}

// exportHeader is the first line of an export.
type exportHeader struct {
	Format   string `json:"format"`
	Origin   string `json:"origin"`
	From     uint64 `json:"from"`
	To       uint64 `json:"to"`
	PrevHash Hash   `json:"prev_hash"`
	Fringe   []Hash `json:"fringe"`
}

// entryLine is one entry line; the parser for it is parseEntryLine.
type entryLine struct {
	Seq      uint64            `json:"seq"`
	Time     string            `json:"time"`
	Actor    string            `json:"actor"`
	Action   Action            `json:"action"`
	Subject  string            `json:"subject"`
	Details  map[string]string `json:"details"`
	PrevHash Hash              `json:"prev_hash"`
	Hash     Hash              `json:"hash"`
}

// checkpointLine is the last line of an export.
type checkpointLine struct {
	Checkpoint string `json:"checkpoint"`
	Proof      []Hash `json:"proof"`
}

// formatTime is the export's time format: RFC 3339 in UTC with as many
// fractional digits as needed.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Export writes entries [from, to) as an export (JSON Lines: a header, one
// line per entry, and a checkpoint line); to is capped at the end of the log.
// The checkpoint is the latest one if it covers the range, or else a new one
// signed for the occasion (or, when Config.WriteCheck refuses to store
// one, the latest, and the export ends there); when it is larger than to, the export carries a
// consistency proof from to to its size. Entries are read from one consistent snapshot,
// and each is checked against its stored hash on the way out.
func (l *Log) Export(ctx context.Context, w io.Writer, from, to uint64) error {
	if from > to {
		return fmt.Errorf("audit: export: from %d is past to %d", from, to)
	}
	cp := l.latest.Load()
	if cp == nil || cp.Size < min(to, l.Size()) {
		signed, err := l.Sign(ctx)
		switch {
		case err == nil:
			cp = signed
		case errors.Is(err, ErrRefused) && cp != nil:
			// The new checkpoint cannot be stored (the disk is full):
			// export what the latest one covers.
		default:
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	to = min(to, cp.Size)
	if from > to {
		return fmt.Errorf("audit: export: from %d is past the end of the log (%d)", from, to)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err := l.db.View(func(txn *badger.Txn) error {
		fr, err := loadFringe(from, l.hashReader(txn))
		if err != nil {
			return err
		}
		var prev Entry
		if from > 0 {
			if prev, err = readEntry(txn, l.ks, from-1); err != nil {
				return err
			}
		}
		if err := writeHeader(enc, cp.Origin, from, to, prev.Hash, fr.hashes); err != nil {
			return err
		}
		if err := l.exportEntries(ctx, txn, enc, from, to); err != nil {
			return err
		}
		proof := tlog.TreeProof{}
		if to > 0 && to < cp.Size {
			if proof, err = tlog.ProveTree(int64(cp.Size), int64(to), l.hashReader(txn)); err != nil {
				return err
			}
		}
		return writeCheckpointLine(enc, cp.Note, proof)
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("audit: export [%d, %d): %w", from, to, err)
	}
	return nil
}

func (l *Log) exportEntries(ctx context.Context, txn *badger.Txn, enc *json.Encoder, from, to uint64) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = l.ks.kindPrefix(kindEntry)
	it := txn.NewIterator(opts)
	defer it.Close()
	next := from
	for it.Seek(l.ks.key(kindEntry, from)); it.Valid() && next < to; it.Next() {
		item := it.Item()
		seq := binary.BigEndian.Uint64(item.Key()[len(opts.Prefix):])
		if seq != next {
			return fmt.Errorf("%w: entry %d is missing", ErrCorrupt, next)
		}
		if seq%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var e Entry
		err := item.Value(func(v []byte) (err error) {
			e, err = decodeEntryValue(seq, v)
			return err
		})
		if err != nil {
			return err
		}
		if err := writeEntry(enc, &e); err != nil {
			return err
		}
		next++
	}
	if next != to {
		return fmt.Errorf("%w: entry %d is missing", ErrCorrupt, next)
	}
	return nil
}

// WriteTo writes ex in the export format, as Log.Export does. Verify does
// not depend on it: what counts is what the lines say.
func (ex *Export) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err := writeHeader(enc, ex.Origin, ex.From, ex.To, ex.PrevHash, ex.Fringe)
	for i := 0; err == nil && i < len(ex.Entries); i++ {
		err = writeEntry(enc, &ex.Entries[i])
	}
	if err == nil {
		err = writeCheckpointLine(enc, ex.Checkpoint, ex.Proof)
	}
	if err == nil {
		err = bw.Flush()
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeHeader(enc *json.Encoder, origin string, from, to uint64, prev Hash, fringe []Hash) error {
	return enc.Encode(exportHeader{Format: ExportFormat, Origin: origin, From: from, To: to,
		PrevHash: prev, Fringe: append([]Hash{}, fringe...)})
}

func writeEntry(enc *json.Encoder, e *Entry) error {
	line := entryLine{
		Seq: e.Seq, Time: formatTime(e.Time), Actor: e.Actor, Action: e.Action,
		Subject: e.Subject, Details: e.Details, PrevHash: e.PrevHash, Hash: e.Hash,
	}
	if line.Details == nil {
		line.Details = map[string]string{}
	}
	return enc.Encode(line)
}

func writeCheckpointLine(enc *json.Encoder, note []byte, proof tlog.TreeProof) error {
	return enc.Encode(checkpointLine{Checkpoint: string(note), Proof: append([]Hash{}, proof...)})
}
