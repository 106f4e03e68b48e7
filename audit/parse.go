package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxLineSize bounds one line of an export.
const MaxLineSize = 1 << 20

// maxProofHashes bounds the hash arrays of an export (a tree of 2^63
// entries needs at most 2*63 hashes).
const maxProofHashes = 128

// ParseError reports a malformed export and names the line (counted from 1)
// and, for an entry line, the sequence number the entry should have.
type ParseError struct {
	Line int
	// Seq is the sequence number the entry on Line should have, when Entry
	// is true: the header's From plus the entries before it.
	Seq   uint64
	Entry bool
	Err   error
}

// Error names the line, the entry when the line is one, and what is wrong.
// An export cut short reads as its *VerifyError.
func (e *ParseError) Error() string {
	var ve *VerifyError
	if errors.As(e.Err, &ve) {
		return ve.Error()
	}
	if e.Entry {
		return fmt.Sprintf("audit: export line %d (seq %d): %v", e.Line, e.Seq, e.Err)
	}
	return fmt.Sprintf("audit: export line %d: %v", e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// ParseExport reads an export written by Log.Export. It is strict: unknown,
// duplicate or missing fields, values of the wrong type, non-canonical times,
// malformed hashes, entries breaking the format rules, empty lines and lines
// longer than MaxLineSize are errors (a *ParseError naming the line). An
// export cut short (it ends after an entry line, or in the middle of a line,
// so that its checkpoint line is missing or incomplete) is reported as a
// *ParseError wrapping a *VerifyError of KindTruncated that names the first
// sequence number missing. It does not check hashes or signatures; Verify
// does.
func ParseExport(r io.Reader) (*Export, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineSize+1)
	unterminated := false // the last line read did not end with '\n'
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		n, tok, err := splitLines(data, atEOF)
		if tok != nil {
			unterminated = n == len(tok)
		}
		return n, tok, err
	})
	line := 0
	next := func() ([]byte, bool, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					err = fmt.Errorf("line longer than %d bytes", MaxLineSize)
				}
				return nil, false, &ParseError{Line: line + 1, Err: err}
			}
			return nil, false, nil
		}
		line++
		b := sc.Bytes()
		if len(b) > MaxLineSize {
			return nil, false, &ParseError{Line: line, Err: fmt.Errorf("line longer than %d bytes", MaxLineSize)}
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, false, &ParseError{Line: line, Err: errors.New("empty line")}
		}
		return b, true, nil
	}

	b, ok, err := next()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &ParseError{Line: 1, Err: errors.New("empty export: want a header line")}
	}
	ex := &Export{}
	if err := parseHeader(b, ex); err != nil {
		return nil, &ParseError{Line: line, Err: err}
	}
	// Every line after the header is an entry except the last, which is the
	// checkpoint: hold each line until the next one shows it is not last.
	if n := ex.To - ex.From; n <= 1<<20 {
		ex.Entries = make([]Entry, 0, n)
	}
	interned := make(map[string]string)
	var held []byte
	heldLine := 0
	for {
		b, ok, err := next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if held != nil {
			e, err := parseEntryLine(held, interned)
			if err != nil {
				return nil, &ParseError{Line: heldLine, Seq: ex.From + uint64(len(ex.Entries)), Entry: true, Err: err}
			}
			ex.Entries = append(ex.Entries, e)
		}
		held, heldLine = append(held[:0], b...), line
	}
	if held == nil {
		if ex.To > ex.From {
			return nil, &ParseError{Line: line + 1, Err: truncated(ex.From, "the export ends after its header line: entries [%d, %d) and the checkpoint line are missing", ex.From, ex.To)}
		}
		return nil, &ParseError{Line: line + 1, Err: errors.New("missing checkpoint line")}
	}
	if err := parseCheckpointLine(held, ex); err != nil {
		return nil, &ParseError{Line: heldLine, Err: cutShort(ex, held, heldLine, unterminated, err, interned)}
	}
	return ex, nil
}

// cutShort explains why the last line of an export, b (line n), is not a
// checkpoint line: the export was cut after an entry or in the middle of a
// line, or the line is malformed (err).
func cutShort(ex *Export, b []byte, n int, unterminated bool, err error, interned map[string]string) error {
	next := ex.From + uint64(len(ex.Entries)) // the entry line n would be
	if e, eerr := parseEntryLine(b, interned); eerr == nil {
		return truncated(e.Seq+1, "the export ends after entry %d (line %d) without its checkpoint line; its header says it holds entries [%d, %d)", e.Seq, n, ex.From, ex.To)
	}
	if !unterminated {
		return err
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`{"checkpoint"`)) {
		return truncated(next, "the export ends in the middle of its checkpoint line (line %d)", n)
	}
	return truncated(next, "the export ends in the middle of line %d, which should be entry %d, without its checkpoint line; its header says it holds entries [%d, %d)", n, next, ex.From, ex.To)
}

// truncated is the error of an export cut short before entry seq.
func truncated(seq uint64, format string, args ...any) *VerifyError {
	return &VerifyError{Seq: seq, End: seq + 1, Kind: KindTruncated, Detail: fmt.Sprintf(format, args...)}
}

// splitLines splits at '\n' only; unlike bufio.ScanLines it keeps '\r', which
// the JSON reader then rejects outside white space.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// fields tracks which fields of a line were seen.
type fields struct {
	names []string
	seen  uint64
}

func (f *fields) mark(key string) (int, error) {
	for i, n := range f.names {
		if n == key {
			f.seen |= 1 << i
			return i, nil
		}
	}
	return -1, fmt.Errorf("unknown field %q", truncate(key, 40))
}

func (f *fields) missing() error {
	for i, n := range f.names {
		if f.seen&(1<<i) == 0 {
			return fmt.Errorf("missing field %q", n)
		}
	}
	return nil
}

func fieldErr(name string, err error) error { return fmt.Errorf("field %q: %w", name, err) }

var headerFields = []string{"format", "origin", "from", "to", "prev_hash", "fringe"}

func parseHeader(b []byte, ex *Export) error {
	p := jparser{b: b}
	f := fields{names: headerFields}
	var format string
	err := p.object(func(key string) error {
		i, err := f.mark(key)
		if err != nil {
			return err
		}
		switch i {
		case 0:
			format, err = p.str()
		case 1:
			ex.Origin, err = p.str()
		case 2:
			ex.From, err = p.uint()
		case 3:
			ex.To, err = p.uint()
		case 4:
			ex.PrevHash, err = p.hash()
		case 5:
			ex.Fringe, err = p.hashes(64)
		}
		if err != nil {
			return fieldErr(key, err)
		}
		return nil
	})
	if err == nil {
		err = p.end()
	}
	if err == nil {
		err = f.missing()
	}
	switch {
	case err != nil:
		return fmt.Errorf("header: %w", err)
	case format != ExportFormat:
		return fmt.Errorf("header: format %q, want %q", truncate(format, 60), ExportFormat)
	case !validOrigin(ex.Origin):
		return errors.New("header: malformed origin")
	case ex.From > ex.To:
		return fmt.Errorf("header: from %d is past to %d", ex.From, ex.To)
	}
	return nil
}

var entryFields = []string{"seq", "time", "actor", "action", "subject", "details", "prev_hash", "hash"}

// parseEntryLine parses one entry line and checks the entry's format rules.
// interned (optional) shares the strings that repeat from line to line.
func parseEntryLine(b []byte, interned map[string]string) (Entry, error) {
	var e Entry
	p := jparser{b: b, interned: interned}
	f := fields{names: entryFields}
	err := p.object(func(key string) error {
		i, err := f.mark(key)
		if err != nil {
			return err
		}
		switch i {
		case 0:
			e.Seq, err = p.uint()
		case 1:
			var s []byte
			if s, _, err = p.strBytes(); err == nil {
				e.Time, err = parseTime(s)
			}
		case 2:
			e.Actor, err = p.istr()
		case 3:
			var s string
			s, err = p.istr()
			e.Action = Action(s)
		case 4:
			e.Subject, err = p.str()
		case 5:
			e.Details, err = parseDetails(&p)
		case 6:
			e.PrevHash, err = p.hash()
		case 7:
			e.Hash, err = p.hash()
		}
		if err != nil {
			return fieldErr(key, err)
		}
		return nil
	})
	if err == nil {
		err = p.end()
	}
	if err == nil {
		err = f.missing()
	}
	if err == nil {
		err = e.validate(false)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("entry: %w", err)
	}
	return e, nil
}

func parseDetails(p *jparser) (map[string]string, error) {
	var m map[string]string
	err := p.object(func(key string) error {
		if len(m) == MaxDetails {
			return fmt.Errorf("more than %d details", MaxDetails)
		}
		v, err := p.str()
		if err != nil {
			return fmt.Errorf("%q: %w", truncate(key, 40), err)
		}
		if m == nil {
			m = make(map[string]string, 4)
		}
		m[key] = v
		return nil
	})
	if len(m) == 0 {
		m = nil
	}
	return m, err
}

// parseTime accepts only the canonical form formatTime writes.
func parseTime(s []byte) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, string(s))
	var buf [40]byte
	if err != nil || !bytes.Equal(t.UTC().AppendFormat(buf[:0], time.RFC3339Nano), s) || !validTime(t) {
		return time.Time{}, fmt.Errorf("want RFC 3339 UTC time in canonical form, got %q", truncate(string(s), 40))
	}
	return t.UTC(), nil
}

var checkpointFields = []string{"checkpoint", "proof"}

func parseCheckpointLine(b []byte, ex *Export) error {
	p := jparser{b: b}
	f := fields{names: checkpointFields}
	err := p.object(func(key string) error {
		i, err := f.mark(key)
		if err != nil {
			return err
		}
		switch i {
		case 0:
			var s string
			s, err = p.str()
			ex.Checkpoint = []byte(s)
		case 1:
			ex.Proof, err = p.hashes(maxProofHashes)
		}
		if err != nil {
			return fieldErr(key, err)
		}
		return nil
	})
	if err == nil {
		err = p.end()
	}
	if err == nil {
		err = f.missing()
	}
	if err != nil {
		return fmt.Errorf("checkpoint line: %w", err)
	}
	return nil
}
