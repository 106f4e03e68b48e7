package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Hash is a SHA-256 hash: an entry's chain hash, a tree node or a tree root.
// Its String and JSON forms are standard base64.
type Hash = tlog.Hash

// Action is what an entry records. The set is closed: Append accepts only the
// constants below. (The export parser accepts any well-formed action name, so
// that an older verifier can still check a log written by a newer jitd.)
type Action string

// The actions jitd records.
const (
	ActionRequestCreated  Action = "request.created"
	ActionRequestApproved Action = "request.approved"
	ActionRequestDenied   Action = "request.denied"
	ActionRequestCanceled Action = "request.canceled"
	ActionRequestTimedOut Action = "request.timed_out"
	ActionBreakGlass      Action = "request.break_glass"
	ActionGrantIssued     Action = "grant.issued"
	ActionGrantFetched    Action = "grant.fetched"
	ActionGrantRevoked    Action = "grant.revoked"
	ActionGrantUsed       Action = "grant.used"
	ActionGrantExpired    Action = "grant.expired"
	ActionPolicyLoaded    Action = "policy.loaded"
	ActionEnrolled        Action = "identity.enrolled"
	ActionAuditExported   Action = "audit.exported"
	ActionEntriesLoaded   Action = "workload.entries_loaded"
	ActionWebhookFailed   Action = "notify.webhook_failed"
	// ActionGrantReviewed: the after-the-fact review of a break-glass grant
	// concluded (details: verdict approved or denied); its flag cleared.
	ActionGrantReviewed Action = "grant.reviewed"
	// ActionGrantExpiring: the grant's end is a lead time away and its
	// expiring notice was sent (details: not_after, lead). Once per grant
	// per end.
	ActionGrantExpiring Action = "grant.expiring"
	// ActionGrantExtensionRequested: the holder asked to push an issued
	// grant's end later (details: extension, ttl, reason, outcome).
	ActionGrantExtensionRequested Action = "grant.extension_requested"
	// ActionGrantExtended: an extension was approved; the grant's end
	// moved (details: extension, not_after, previous_not_after, serial for a
	// CSR grant).
	ActionGrantExtended Action = "grant.extended"
	// ActionGrantExtensionReviewed: an approver reviewed a pending
	// extension without concluding it (details: extension, approve,
	// outcome).
	ActionGrantExtensionReviewed Action = "grant.extension_reviewed"
	// ActionGrantExtensionDenied: an approver denied a pending extension;
	// the grant ends as before.
	ActionGrantExtensionDenied Action = "grant.extension_denied"
	// ActionCheckpoint entries are written by the log itself: see Config.CheckpointEvery.
	ActionCheckpoint Action = "audit.checkpoint"
)

var actions = []Action{
	ActionRequestCreated, ActionRequestApproved, ActionRequestDenied, ActionRequestCanceled,
	ActionRequestTimedOut, ActionBreakGlass, ActionGrantIssued, ActionGrantFetched,
	ActionGrantRevoked, ActionGrantUsed, ActionGrantExpiring, ActionGrantExpired, ActionGrantReviewed, ActionPolicyLoaded,
	ActionGrantExtensionRequested, ActionGrantExtensionReviewed, ActionGrantExtended, ActionGrantExtensionDenied,
	ActionEnrolled, ActionAuditExported, ActionEntriesLoaded, ActionWebhookFailed, ActionCheckpoint,
}

// Actions returns the closed set of actions, in a fixed order.
func Actions() []Action { return slices.Clone(actions) }

// Known reports whether a is one of the Action constants.
func (a Action) Known() bool { return slices.Contains(actions, a) }

// Limits on an entry's fields, enforced by Append and by the export parser.
const (
	MaxActorLen       = 2048 // the SPIFFE limit on an ID's length
	MaxSubjectLen     = 256
	MaxActionLen      = 64
	MaxDetails        = 64
	MaxDetailKeyLen   = 128
	MaxDetailValueLen = 16 << 10
	// MaxEntrySize bounds the canonical encoding of one entry.
	MaxEntrySize = 64 << 10
)

// Record is what a caller asks the log to record.
type Record struct {
	// Actor is the SPIFFE ID of who acted.
	Actor string
	// Action is what happened.
	Action Action
	// Subject is the request or grant ID the action is about; it may be
	// empty (for example for ActionPolicyLoaded).
	Subject string
	// Details are structured facts about the action (scopes, reason,
	// approver, serial number...). Keys are [A-Za-z0-9_.-], values UTF-8.
	Details map[string]string
}

// Entry is one record of the log as committed.
type Entry struct {
	// Seq is the entry's position: 0 for the first entry, no gaps.
	Seq uint64
	// Time is when the log committed the entry (UTC; never before the
	// previous entry's time).
	Time time.Time
	Record
	// PrevHash is the previous entry's Hash (all zero for entry 0).
	PrevHash Hash
	// Hash is SHA-256(PrevHash || canonical encoding).
	Hash Hash
}

// canonicalTag starts every canonical encoding; it names the format version.
const canonicalTag = "JGAUDIT1"

// AppendCanonical appends e's canonical encoding to dst (see the package
// documentation for the layout). It covers every field except PrevHash and
// Hash. The entry is assumed valid (see Append and ParseExport).
func (e *Entry) AppendCanonical(dst []byte) []byte {
	dst = append(dst, canonicalTag...)
	dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixNano()))
	dst = appendString(dst, e.Actor)
	dst = appendString(dst, string(e.Action))
	dst = appendString(dst, e.Subject)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Details)))
	if len(e.Details) == 1 { // common case: no sort, no allocation
		for k, v := range e.Details {
			dst = appendString(appendString(dst, k), v)
		}
		return dst
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = appendString(appendString(dst, k), e.Details[k])
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// ChainHash returns SHA-256(prev || canonical): the hash of an entry whose
// canonical encoding is canonical and whose predecessor's hash is prev.
func ChainHash(prev Hash, canonical []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical)
	var out Hash
	h.Sum(out[:0])
	return out
}

// LeafHash returns the Merkle tree leaf hash of an entry:
// tlog.RecordHash(canonical || hash), that is SHA-256(0x00 || canonical || hash).
func LeafHash(canonical []byte, hash Hash) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(canonical)
	h.Write(hash[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// ComputeHash recomputes e's chain hash from e.PrevHash and its fields.
func (e *Entry) ComputeHash() Hash { return ChainHash(e.PrevHash, e.AppendCanonical(nil)) }

// LeafHash returns e's Merkle tree leaf hash (using e.Hash as recorded).
func (e *Entry) LeafHash() Hash { return LeafHash(e.AppendCanonical(nil), e.Hash) }

// errInvalid marks an entry or record that breaks the format rules.
var errInvalid = errors.New("invalid entry")

// validate checks r against the format rules. knownOnly restricts the action
// to the closed set (Append) rather than to a well-formed name (parser).
func (r *Record) validate(knownOnly bool) error {
	if err := checkActor(r.Actor); err != nil {
		return err
	}
	if knownOnly && !r.Action.Known() {
		return fmt.Errorf("%w: unknown action %q", errInvalid, r.Action)
	}
	if !validActionName(string(r.Action)) {
		return fmt.Errorf("%w: malformed action %q", errInvalid, r.Action)
	}
	if len(r.Subject) > MaxSubjectLen || !printable(r.Subject) {
		return fmt.Errorf("%w: subject must be at most %d printable bytes", errInvalid, MaxSubjectLen)
	}
	if len(r.Details) > MaxDetails {
		return fmt.Errorf("%w: %d details, at most %d", errInvalid, len(r.Details), MaxDetails)
	}
	size := len(canonicalTag) + 8 + 8 + 4*4 + len(r.Actor) + len(r.Action) + len(r.Subject)
	for k, v := range r.Details {
		if !validDetailKey(k) {
			return fmt.Errorf("%w: detail key %q must be 1 to %d bytes of [A-Za-z0-9_.-]", errInvalid, k, MaxDetailKeyLen)
		}
		if len(v) > MaxDetailValueLen || !utf8.ValidString(v) {
			return fmt.Errorf("%w: detail %q must be valid UTF-8 of at most %d bytes", errInvalid, k, MaxDetailValueLen)
		}
		size += 8 + len(k) + len(v)
	}
	if size > MaxEntrySize {
		return fmt.Errorf("%w: encoded entry is %d bytes, at most %d", errInvalid, size, MaxEntrySize)
	}
	return nil
}

// checkActor accepts a SPIFFE ID: spiffe://<trust domain>[/path], with the
// trust domain in lower case letters, digits, '.', '-' and '_'.
func checkActor(s string) error {
	td, ok := strings.CutPrefix(s, "spiffe://")
	if ok {
		td, _, _ = strings.Cut(td, "/")
	}
	if !ok || td == "" || len(s) > MaxActorLen || !printable(s) || strings.ContainsAny(s, " ?#") {
		return fmt.Errorf("%w: actor %q is not a SPIFFE ID", errInvalid, truncate(s, 80))
	}
	for _, c := range []byte(td) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%w: actor %q has a malformed trust domain", errInvalid, truncate(s, 80))
		}
	}
	return nil
}

func validActionName(s string) bool {
	if s == "" || len(s) > MaxActionLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func validDetailKey(s string) bool {
	if s == "" || len(s) > MaxDetailKeyLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// validTime reports whether t can be encoded (Unix nanoseconds in an int64).
func validTime(t time.Time) bool {
	minT, maxT := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
	return !t.Before(minT) && !t.After(maxT)
}

// decodeCanonical parses a canonical encoding back into an Entry (without
// PrevHash and Hash). It rejects anything AppendCanonical would not produce.
func decodeCanonical(b []byte) (Entry, error) {
	var e Entry
	d := decoder{b: b}
	if tag := d.bytes(len(canonicalTag)); string(tag) != canonicalTag {
		return e, fmt.Errorf("%w: bad canonical tag", errInvalid)
	}
	e.Seq = d.uint64()
	e.Time = time.Unix(0, int64(d.uint64())).UTC()
	e.Actor = d.string()
	e.Action = Action(d.string())
	e.Subject = d.string()
	n := d.uint32()
	if d.err == nil && n > MaxDetails {
		d.err = fmt.Errorf("%w: too many details", errInvalid)
	}
	if n > 0 && d.err == nil {
		e.Details = make(map[string]string, n)
		prev := ""
		for i := range n {
			k, v := d.string(), d.string()
			if d.err == nil && i > 0 && k <= prev {
				d.err = fmt.Errorf("%w: detail keys not in order", errInvalid)
			}
			e.Details[k], prev = v, k
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errInvalid, len(d.b))
	}
	if d.err != nil {
		return Entry{}, d.err
	}
	if err := e.validate(false); err != nil {
		return Entry{}, err
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: truncated encoding", errInvalid)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) uint64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) string() string {
	n := d.uint32()
	if n > MaxEntrySize {
		if d.err == nil {
			d.err = fmt.Errorf("%w: string too long", errInvalid)
		}
		return ""
	}
	return string(d.bytes(int(n)))
}
