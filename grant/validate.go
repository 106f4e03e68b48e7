package grant

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Validate reports whether g obeys every rule of the package doc, naming the
// first field that does not.
func (g *Grant) Validate() error {
	if g == nil {
		return fmt.Errorf("%w: nil grant", ErrInvalid)
	}
	if err := ValidateID(g.ID); err != nil {
		return err
	}
	if len(g.Scopes) == 0 {
		return fmt.Errorf("%w: no scopes", ErrInvalid)
	}
	if len(g.Scopes) > MaxScopes {
		return fmt.Errorf("%w: %d scopes, more than %d", ErrInvalid, len(g.Scopes), MaxScopes)
	}
	for i, s := range g.Scopes {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("scope %d: %w", i, err)
		}
		for j := range i {
			if g.Scopes[j].equal(s) {
				return fmt.Errorf("%w: scope %d duplicates scope %d (%s)", ErrInvalid, i, j, s.Method)
			}
		}
	}
	if len(g.Approvers) > MaxApprovers {
		return fmt.Errorf("%w: %d approvers, more than %d", ErrInvalid, len(g.Approvers), MaxApprovers)
	}
	for i, a := range g.Approvers {
		if a.IsZero() {
			return fmt.Errorf("%w: approver %d: empty SPIFFE ID", ErrInvalid, i)
		}
		for j := range i {
			if g.Approvers[j] == a {
				return fmt.Errorf("%w: approver %d duplicates approver %d (%s)", ErrInvalid, i, j, a)
			}
		}
	}
	return nil
}

// ValidateID reports whether id is a well-formed grant ID: 1 to
// [MaxIDLength] characters from [A-Za-z0-9._-].
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty grant ID", ErrInvalid)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: grant ID of %d bytes, more than %d", ErrInvalid, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: grant ID %q: character %q at %d not in [A-Za-z0-9._-]", ErrInvalid, id, c, i)
		}
	}
	return nil
}

// Validate reports whether s has a well-formed method and resource patterns.
func (s Scope) Validate() error {
	if err := ValidateMethod(s.Method); err != nil {
		return err
	}
	if len(s.Resources) > MaxResources {
		return fmt.Errorf("%w: %d resource patterns for %s, more than %d", ErrInvalid, len(s.Resources), s.Method, MaxResources)
	}
	for i, r := range s.Resources {
		if err := ValidateResourcePattern(r); err != nil {
			return fmt.Errorf("resource %d: %w", i, err)
		}
		for j := range i {
			if s.Resources[j] == r {
				return fmt.Errorf("%w: resource %d duplicates resource %d (%q)", ErrInvalid, i, j, r)
			}
		}
	}
	return nil
}

// ValidateMethod reports whether m is a full gRPC method name
// "/pkg.Service/Method" or a service wildcard "/pkg.Service/*". The service
// is one or more dot-separated identifiers, the method one identifier.
func ValidateMethod(m string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: method %q: %s (want /pkg.Service/Method or /pkg.Service/*)", ErrInvalid, m, why)
	}
	if m == "" {
		return bad("empty")
	}
	if len(m) > MaxMethodLength {
		return bad(fmt.Sprintf("%d bytes, more than %d", len(m), MaxMethodLength))
	}
	if m[0] != '/' {
		return bad("does not start with /")
	}
	service, method, ok := strings.Cut(m[1:], "/")
	if !ok {
		return bad("no / between service and method")
	}
	if service == "" {
		return bad("empty service")
	}
	for part := range strings.SplitSeq(service, ".") {
		if !isIdent(part) {
			return bad(fmt.Sprintf("service element %q is not an identifier", part))
		}
	}
	if method == "*" {
		return nil
	}
	if method == "" {
		return bad("empty method")
	}
	if !isIdent(method) {
		return bad(fmt.Sprintf("method %q is not an identifier", method))
	}
	return nil
}

// ValidateResourcePattern reports whether p is a well-formed resource
// pattern: non-empty segments separated by "/", each "*" or a run of
// printable ASCII other than "*" and space, and none "." or ".." (a backend
// that normalises paths would read "accounts/.." as something else than the
// grant names).
func ValidateResourcePattern(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty resource pattern", ErrInvalid)
	}
	if len(p) > MaxResourceLength {
		return fmt.Errorf("%w: resource pattern of %d bytes, more than %d", ErrInvalid, len(p), MaxResourceLength)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			return fmt.Errorf("%w: resource pattern %q has an empty segment", ErrInvalid, p)
		}
		if seg == "*" {
			continue
		}
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: resource pattern %q has a %q segment", ErrInvalid, p, seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c == '*' {
				return fmt.Errorf("%w: resource pattern %q: * must be a whole segment", ErrInvalid, p)
			}
			if c <= ' ' || c > '~' {
				return fmt.Errorf("%w: resource pattern %q: character %q not printable ASCII", ErrInvalid, p, c)
			}
		}
	}
	return nil
}

func parseApprover(s string) (spiffeid.ID, error) {
	if len(s) > MaxApproverIDBytes {
		return spiffeid.ID{}, fmt.Errorf("%w: approver ID of %d bytes, more than %d", ErrInvalid, len(s), MaxApproverIDBytes)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: approver %q is not a SPIFFE ID: %v", ErrInvalid, s, err)
	}
	return id, nil
}

func (s Scope) equal(o Scope) bool {
	if s.Method != o.Method || len(s.Resources) != len(o.Resources) {
		return false
	}
	for i := range s.Resources {
		if s.Resources[i] != o.Resources[i] {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isIdent(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}
