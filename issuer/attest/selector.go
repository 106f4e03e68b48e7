package attest

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Selector types. The Attestor produces each of them (unix:user and
// unix:group only when the ID has a name) and registration entries may use
// any of them.
const (
	// TypeUID is the caller's effective user ID, in decimal.
	TypeUID = "unix:uid"
	// TypeGID is the caller's effective group ID, in decimal.
	TypeGID = "unix:gid"
	// TypeUser is the name of the caller's user ID.
	TypeUser = "unix:user"
	// TypeGroup is the name of the caller's group ID.
	TypeGroup = "unix:group"
	// TypePath is the absolute path of the caller's executable, as the
	// kernel reports it in /proc/<pid>/exe.
	TypePath = "unix:path"
	// TypeSHA256 is the SHA-256 of the caller's executable, in lowercase
	// hex.
	TypeSHA256 = "unix:sha256"
)

// knownTypes lists the known types for error messages.
const knownTypes = TypeUID + ", " + TypeGID + ", " + TypeUser + ", " + TypeGroup + ", " + TypePath + ", " + TypeSHA256

// knownType reports whether typ is one of the Type constants.
func knownType(typ string) bool {
	switch typ {
	case TypeUID, TypeGID, TypeUser, TypeGroup, TypePath, TypeSHA256:
		return true
	}
	return false
}

// Selector is one attested property of a caller, such as its user ID or the
// hash of its executable. Its text form is Type ":" Value, for example
// "unix:uid:1000" or "unix:path:/usr/bin/backup".
type Selector struct {
	// Type is one of the Type constants, e.g. "unix:uid".
	Type string
	// Value is the property's value in its canonical form, e.g. "1000".
	Value string
}

// String returns the selector's text form, which ParseSelector accepts.
func (s Selector) String() string { return s.Type + ":" + s.Value }

// ParseSelector parses a selector's text form. It is strict: the type must
// be a known one and the value canonical (uid and gid in decimal without
// sign or leading zeros, an absolute clean path, a lowercase hex SHA-256),
// so that a selector that parses is one the Attestor can produce.
func ParseSelector(s string) (Selector, error) {
	sel, err := parseSelector(s)
	if err != nil {
		return Selector{}, fmt.Errorf("attest: %w", err)
	}
	return sel, nil
}

// parseSelector is ParseSelector with errors not prefixed by the package
// name.
func parseSelector(s string) (Selector, error) {
	// Every type is "unix:" plus a name, so the value starts after the
	// second colon.
	rest, ok := strings.CutPrefix(s, "unix:")
	if !ok {
		return Selector{}, fmt.Errorf("selector %q: unknown type (want one of %s)", s, knownTypes)
	}
	name, value, ok := strings.Cut(rest, ":")
	typ := "unix:" + name
	if !knownType(typ) {
		return Selector{}, fmt.Errorf("selector %q: unknown type %q (want one of %s)", s, typ, knownTypes)
	}
	if !ok {
		return Selector{}, fmt.Errorf("selector %q: missing value after %q", s, typ+":")
	}
	sel := Selector{Type: typ, Value: value}
	if err := sel.validate(); err != nil {
		return Selector{}, fmt.Errorf("selector %q: %w", s, err)
	}
	return sel, nil
}

// validate checks that s has a known type and a canonical value.
func (s Selector) validate() error {
	if !knownType(s.Type) {
		return fmt.Errorf("unknown type %q", s.Type)
	}
	if s.Value == "" {
		return errors.New("empty value")
	}
	switch s.Type {
	case TypeUID, TypeGID:
		n, err := strconv.ParseUint(s.Value, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != s.Value {
			return fmt.Errorf("value %q is not a decimal ID without sign or leading zeros", s.Value)
		}
	case TypeUser, TypeGroup:
		if !utf8.ValidString(s.Value) || strings.ContainsFunc(s.Value, unicode.IsControl) {
			return fmt.Errorf("value %q has invalid UTF-8 or control characters", s.Value)
		}
	case TypePath:
		if !strings.HasPrefix(s.Value, "/") || path.Clean(s.Value) != s.Value || strings.ContainsRune(s.Value, 0) {
			return fmt.Errorf("value %q is not an absolute, clean path", s.Value)
		}
	case TypeSHA256:
		if len(s.Value) != 64 || strings.ContainsFunc(s.Value, func(r rune) bool {
			return (r < '0' || r > '9') && (r < 'a' || r > 'f')
		}) {
			return fmt.Errorf("value %q is not 64 lowercase hex digits", s.Value)
		}
	}
	return nil
}

// Selectors is a set of selectors: those of one attested caller. Make one
// with NewSelectors; the zero value is an empty set that Add cannot fill.
type Selectors map[Selector]struct{}

// NewSelectors returns a set holding sels.
func NewSelectors(sels ...Selector) Selectors {
	s := make(Selectors, len(sels))
	for _, sel := range sels {
		s[sel] = struct{}{}
	}
	return s
}

// Add adds sel to the set.
func (s Selectors) Add(sel Selector) { s[sel] = struct{}{} }

// Has reports whether sel is in the set.
func (s Selectors) Has(sel Selector) bool {
	_, ok := s[sel]
	return ok
}

// HasAll reports whether every one of sels is in the set. It is true for
// an empty sels.
func (s Selectors) HasAll(sels []Selector) bool {
	for _, sel := range sels {
		if !s.Has(sel) {
			return false
		}
	}
	return true
}

// Sorted returns the selectors ordered by type, then value.
func (s Selectors) Sorted() []Selector {
	out := make([]Selector, 0, len(s))
	for sel := range s {
		out = append(out, sel)
	}
	slices.SortFunc(out, compareSelectors)
	return out
}

// String returns the sorted selectors' text forms separated by spaces.
func (s Selectors) String() string { return joinSelectors(s.Sorted()) }

// compareSelectors orders selectors by type, then value.
func compareSelectors(a, b Selector) int {
	return cmp.Or(strings.Compare(a.Type, b.Type), strings.Compare(a.Value, b.Value))
}

// joinSelectors returns the text forms of sels separated by spaces.
func joinSelectors(sels []Selector) string {
	parts := make([]string, len(sels))
	for i, sel := range sels {
		parts[i] = sel.String()
	}
	return strings.Join(parts, " ")
}
