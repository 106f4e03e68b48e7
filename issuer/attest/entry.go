package attest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bounds of an entry's identity TTL.
const (
	// MinTTL is the shortest identity TTL an entry may set.
	MinTTL = time.Minute
	// MaxTTL is the longest identity TTL an entry may set.
	MaxTTL = 24 * time.Hour
)

// Entry is a registration entry: callers whose selectors include all of
// Selectors are entitled to the identity ID, issued for TTL.
type Entry struct {
	// ID is the SPIFFE ID issued to matching callers.
	ID spiffeid.ID
	// Selectors must all be among a caller's for the entry to match.
	Selectors []Selector
	// TTL is the lifetime of the identity SVIDs issued for the entry.
	TTL time.Duration
}

// Matches reports whether every one of the entry's selectors is in sels.
// An entry without selectors matches nothing.
func (e Entry) Matches(sels Selectors) bool {
	return len(e.Selectors) > 0 && sels.HasAll(e.Selectors)
}

// String describes the entry for logs and audit details, e.g.
// "spiffe://example.org/backup [unix:uid:1000 unix:path:/usr/bin/backup] ttl=1h0m0s".
// Selectors appear sorted.
func (e Entry) String() string {
	return fmt.Sprintf("%s [%s] ttl=%s", e.ID, joinSelectors(e.sortedSelectors()), e.TTL)
}

// sortedSelectors returns the entry's distinct selectors, sorted.
func (e Entry) sortedSelectors() []Selector {
	sels := slices.Clone(e.Selectors)
	slices.SortFunc(sels, compareSelectors)
	return slices.Compact(sels)
}

// key identifies the entry by its ID and selector set, ignoring TTL and
// selector order: two valid entries never share a key.
func (e Entry) key() string {
	var b strings.Builder
	b.WriteString(e.ID.String())
	for _, sel := range e.sortedSelectors() {
		b.WriteByte(0)
		b.WriteString(sel.String())
	}
	return b.String()
}

// Entries is an ordered list of registration entries. Order matters: the
// first entry that matches a caller gives its default identity.
type Entries []Entry

// Match returns the entries that match sels, in list order; the first is
// the caller's default identity. When several matching entries share an ID
// only the first of them is returned, so that a caller never gets the same
// identity twice. Match returns nil when nothing matches: the caller gets no
// identity.
func (es Entries) Match(sels Selectors) []Entry {
	var out []Entry
	for _, e := range es {
		if e.Matches(sels) && !slices.ContainsFunc(out, func(o Entry) bool { return o.ID == e.ID }) {
			out = append(out, e)
		}
	}
	return out
}

// ValidateEntries checks a list of entries: each has a SPIFFE ID with a
// path, at least one selector, only valid and distinct selectors, and a TTL
// within [MinTTL, MaxTTL]; no two entries have the same ID and the same
// selectors. Two entries may share an ID if their selectors differ (either
// set of selectors then earns the identity). The error lists every problem,
// naming each entry by index and field as in "entries[2].ttl".
func ValidateEntries(es Entries) error {
	var errs []error
	seen := make(map[string]int, len(es))
	for i, e := range es {
		for _, fe := range validateEntry(e) {
			errs = append(errs, fe.at(i))
		}
		if e.ID.IsZero() || len(e.Selectors) == 0 {
			continue
		}
		k := e.key()
		if j, ok := seen[k]; ok {
			errs = append(errs, fmt.Errorf("attest: entries[%d]: same id and selectors as entries[%d]", i, j))
			continue
		}
		seen[k] = i
	}
	return errors.Join(errs...)
}

// fieldError is a problem with one field of one entry.
type fieldError struct {
	field string // "id", "ttl", "selectors" or "selectors[3]"
	err   error
}

// at returns the error for the entry at index i.
func (fe fieldError) at(i int) error {
	return fmt.Errorf("attest: entries[%d].%s: %w", i, fe.field, fe.err)
}

// validateEntry returns the problems with e alone.
func validateEntry(e Entry) []fieldError {
	var errs []fieldError
	switch {
	case e.ID.IsZero():
		errs = append(errs, fieldError{"id", errors.New("missing SPIFFE ID")})
	case e.ID.Path() == "":
		errs = append(errs, fieldError{"id", fmt.Errorf("SPIFFE ID %q has no path", e.ID)})
	}
	if len(e.Selectors) == 0 {
		errs = append(errs, fieldError{"selectors", errors.New("at least one selector is required")})
	}
	for j, sel := range e.Selectors {
		field := "selectors[" + strconv.Itoa(j) + "]"
		if err := sel.validate(); err != nil {
			errs = append(errs, fieldError{field, fmt.Errorf("selector %q: %w", sel, err)})
		} else if slices.Contains(e.Selectors[:j], sel) {
			errs = append(errs, fieldError{field, fmt.Errorf("duplicate selector %q", sel)})
		}
	}
	if e.TTL < MinTTL || e.TTL > MaxTTL {
		errs = append(errs, fieldError{"ttl", fmt.Errorf("%s is outside [%s, %s]", e.TTL, MinTTL, MaxTTL)})
	}
	return errs
}

// Diff compares two lists of entries so that every change can be audited.
// Entries are the same when they have the same ID and selectors (in any
// order). Added holds the entries only in next and removed those only in
// prev. Changed holds, as they are in next, the entries in both lists whose
// TTL changed or whose position relative to the other common entries
// changed (reordering can change a caller's default identity). Each list
// keeps the order of the list it comes from; all three are empty when the
// lists are equivalent. Lists with repeated entries (which ValidateEntries
// rejects) are compared occurrence by occurrence.
func Diff(prev, next Entries) (added, removed, changed []Entry) {
	prevKeys, nextKeys := occurrenceKeys(prev), occurrenceKeys(next)
	inPrev := make(map[string]int, len(prev)) // key -> index in prev
	for i, k := range prevKeys {
		inPrev[k] = i
	}
	inNext := make(map[string]bool, len(next))
	for _, k := range nextKeys {
		inNext[k] = true
	}
	// rank[k] is the position of common entry k among the common entries
	// of prev.
	rank := make(map[string]int)
	for i, k := range prevKeys {
		if inNext[k] {
			rank[k] = len(rank)
		} else {
			removed = append(removed, prev[i])
		}
	}
	common := 0
	for i, k := range nextKeys {
		j, ok := inPrev[k]
		if !ok {
			added = append(added, next[i])
			continue
		}
		if rank[k] != common || prev[j].TTL != next[i].TTL {
			changed = append(changed, next[i])
		}
		common++
	}
	return added, removed, changed
}

// occurrenceKeys returns the keys of es, each suffixed with its occurrence
// number so that repeated entries stay distinct.
func occurrenceKeys(es Entries) []string {
	keys := make([]string, len(es))
	n := make(map[string]int, len(es))
	for i, e := range es {
		k := e.key()
		keys[i] = k + "\x00#" + strconv.Itoa(n[k])
		n[k]++
	}
	return keys
}
