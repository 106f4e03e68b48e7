package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the log's Merkle tree: its size and
// root hash at a time. Its text follows the C2SP tlog-checkpoint shape:
//
//	<origin>
//	<tree size, decimal>
//	<root hash, standard base64>
//	<time, RFC 3339, UTC>
//
// and Note holds that text signed in the signed-note format
// (golang.org/x/mod/sumdb/note) by the audit key.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Time   time.Time
	// Note is the signed note, as stored and exported.
	Note []byte
}

// ErrBadSignature reports a checkpoint that is not validly signed by the
// expected audit key.
var ErrBadSignature = errors.New("audit: checkpoint not signed by the audit key")

// errMalformedCheckpoint reports checkpoint text that does not parse.
var errMalformedCheckpoint = errors.New("malformed checkpoint")

// checkpointText formats the signed text of a checkpoint.
func checkpointText(origin string, size uint64, root Hash, t time.Time) string {
	return fmt.Sprintf("%s\n%d\n%s\n%s\n", origin, size, root, t.UTC().Format(time.RFC3339))
}

// signCheckpoint signs a checkpoint of the tree (size, root) at time t.
func signCheckpoint(s note.Signer, origin string, size uint64, root Hash, t time.Time) (*Checkpoint, error) {
	t = t.UTC().Truncate(time.Second)
	msg, err := note.Sign(&note.Note{Text: checkpointText(origin, size, root, t)}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root, Time: t, Note: msg}, nil
}

// OpenCheckpoint checks that msg is a signed note carrying a valid signature
// by key and parses its text. A note that is not signed by key fails with an
// error matching ErrBadSignature. Signatures by other keys (such as witness
// cosignatures) are ignored.
func OpenCheckpoint(msg []byte, key note.Verifier) (*Checkpoint, error) {
	if key == nil {
		return nil, errors.New("audit: open checkpoint: no verifier key")
	}
	n, err := note.Open(msg, note.VerifierList(key))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, fmt.Errorf("%w %s: %v", ErrBadSignature, key.Name(), err)
		}
		return nil, fmt.Errorf("audit: open checkpoint: %w", err)
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	cp.Note = append([]byte(nil), msg...)
	return cp, nil
}

// parseCheckpointText parses the (already verified) text of a checkpoint.
func parseCheckpointText(text string) (*Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" {
		return nil, fmt.Errorf("audit: %w: want 4 lines", errMalformedCheckpoint)
	}
	origin, sizeStr, rootStr, timeStr := lines[0], lines[1], lines[2], lines[3]
	if origin == "" {
		return nil, fmt.Errorf("audit: %w: empty origin", errMalformedCheckpoint)
	}
	size, err := strconv.ParseUint(sizeStr, 10, 63)
	if err != nil || strconv.FormatUint(size, 10) != sizeStr {
		return nil, fmt.Errorf("audit: %w: bad tree size %q", errMalformedCheckpoint, truncate(sizeStr, 40))
	}
	root, err := tlog.ParseHash(rootStr)
	if err != nil {
		return nil, fmt.Errorf("audit: %w: bad root hash", errMalformedCheckpoint)
	}
	t, err := time.Parse(time.RFC3339, timeStr)
	if err != nil || t.UTC().Format(time.RFC3339) != timeStr {
		return nil, fmt.Errorf("audit: %w: bad time %q", errMalformedCheckpoint, truncate(timeStr, 40))
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root, Time: t.UTC()}, nil
}

// String returns a one-line summary: origin, size, root and time.
func (c *Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s at %s", c.Origin, c.Size, c.Root, c.Time.Format(time.RFC3339))
}

// validOrigin reports whether s can be a checkpoint's first line.
func validOrigin(s string) bool {
	return s != "" && len(s) <= 256 && printable(s)
}
