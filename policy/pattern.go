package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const spiffeScheme = "spiffe://"

// idPattern is a parsed SPIFFE ID pattern (see the package doc, "ID
// patterns"). Matching never allocates.
//
// A wildcard pattern is kept as the literal text before its first "*" and
// the tokens after it: "*" or a literal run. Since "*" only ever stands for
// a whole segment or the end of the last one, a "*" token matches one or
// more characters up to the next "/" or the end, and matching is a single
// left-to-right pass over the ID's string.
type idPattern struct {
	raw    string      // as written in the file
	fixed  bool        // no wildcard: matches exactly the ID raw
	id     spiffeid.ID // the ID, when fixed
	prefix string      // raw up to the first "*"
	tokens []string    // the rest: "*" or literal runs
}

// parseIDPattern parses and validates s.
func parseIDPattern(s string) (idPattern, error) {
	if len(s) > maxIDLength {
		return idPattern{}, fmt.Errorf("%d bytes, more than %d", len(s), maxIDLength)
	}
	if !strings.HasPrefix(s, spiffeScheme) {
		return idPattern{}, errors.New("not a SPIFFE ID pattern (want spiffe://trust-domain/path)")
	}
	rest := s[len(spiffeScheme):]
	td, path, hasPath := strings.Cut(rest, "/")
	if strings.Contains(td, "*") {
		return idPattern{}, errors.New("the trust domain cannot be wildcarded")
	}
	if _, err := spiffeid.TrustDomainFromString(td); err != nil || td == "" {
		return idPattern{}, fmt.Errorf("invalid trust domain %q", td)
	}
	p := idPattern{raw: s}
	if !hasPath {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return idPattern{}, err
		}
		p.fixed, p.id = true, id
		return p, nil
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		star := strings.IndexByte(seg, '*')
		switch {
		case seg == "*":
		case star >= 0 && last && star == len(seg)-1:
			if err := spiffeid.ValidatePathSegment(seg[:star]); err != nil {
				return idPattern{}, fmt.Errorf("segment %q: invalid prefix before *", seg)
			}
		case star >= 0 && !last && star == len(seg)-1 && len(seg) > 1:
			return idPattern{}, fmt.Errorf("segment %q: a prefix wildcard is allowed in the last segment only", seg)
		case star >= 0:
			return idPattern{}, fmt.Errorf("segment %q: * must be a whole segment or end the last segment", seg)
		default:
			if err := spiffeid.ValidatePathSegment(seg); err != nil {
				return idPattern{}, fmt.Errorf("segment %q: %v", seg, err)
			}
		}
	}
	first := strings.IndexByte(s, '*')
	if first < 0 {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return idPattern{}, err
		}
		p.fixed, p.id = true, id
		return p, nil
	}
	p.prefix = s[:first]
	for rest := s[first:]; rest != ""; {
		if rest[0] == '*' {
			p.tokens = append(p.tokens, "*")
			rest = rest[1:]
			continue
		}
		k := strings.IndexByte(rest, '*')
		if k < 0 {
			k = len(rest)
		}
		p.tokens = append(p.tokens, rest[:k])
		rest = rest[k:]
	}
	return p, nil
}

// match reports whether id matches p. It does not allocate.
func (p *idPattern) match(id spiffeid.ID) bool {
	s := id.String()
	if p.fixed {
		return s == p.raw
	}
	if len(s) < len(p.prefix) || s[:len(p.prefix)] != p.prefix {
		return false
	}
	s = s[len(p.prefix):]
	for _, tok := range p.tokens {
		if tok == "*" {
			j := 0
			for j < len(s) && s[j] != '/' {
				j++
			}
			if j == 0 {
				return false
			}
			s = s[j:]
			continue
		}
		if len(s) < len(tok) || s[:len(tok)] != tok {
			return false
		}
		s = s[len(tok):]
	}
	return s == ""
}

// literal returns the text every ID matching p starts with.
func (p *idPattern) literal() string {
	if p.fixed {
		return p.raw
	}
	return p.prefix
}

// commonPrefix returns the longest text every ID matching any of ps starts
// with.
func (ps principals) commonPrefix() string {
	if len(ps) == 0 {
		return ""
	}
	common := ps[0].pat.literal()
	for i := 1; i < len(ps); i++ {
		lit := ps[i].pat.literal()
		n := 0
		for n < len(common) && n < len(lit) && common[n] == lit[n] {
			n++
		}
		common = common[:n]
	}
	return common
}

// principal is one entry of a list of who: an ID pattern, written either
// directly or as a member of the named group.
type principal struct {
	pat   idPattern
	group string // the group it came from, "" when written directly
}

// describe says what the principal is, for explanations.
func (pr *principal) describe() string {
	if pr.group != "" {
		return fmt.Sprintf("%q (group %s)", pr.pat.raw, pr.group)
	}
	return fmt.Sprintf("%q", pr.pat.raw)
}

// principals is a list of who; it matches an ID when any entry does.
type principals []principal

// match returns the index of the first entry matching id, or -1.
func (ps principals) match(id spiffeid.ID) int {
	for i := range ps {
		if ps[i].pat.match(id) {
			return i
		}
	}
	return -1
}
