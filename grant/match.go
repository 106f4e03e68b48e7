package grant

import "strings"

// Decision is the outcome of [Grant.Authorize].
type Decision uint8

// Decisions, from the most to the least specific denial.
const (
	// Allowed: some scope allows the method and the resource.
	Allowed Decision = iota
	// MethodNotInScope: no scope names the method.
	MethodNotInScope
	// ResourceNotInScope: scopes name the method, but none allows the
	// resource (or the resource is missing and every such scope needs one).
	ResourceNotInScope
)

// String returns a short name for d.
func (d Decision) String() string {
	switch d {
	case Allowed:
		return "allowed"
	case MethodNotInScope:
		return "method not in scope"
	case ResourceNotInScope:
		return "resource not in scope"
	}
	return "unknown"
}

// Authorize reports whether g allows a call of method on resource. resource
// is "" when the call names none. It does not allocate.
func (g *Grant) Authorize(method, resource string) Decision {
	d := MethodNotInScope
	for i := range g.Scopes {
		s := &g.Scopes[i]
		if !s.MatchMethod(method) {
			continue
		}
		if s.MatchResource(resource) {
			return Allowed
		}
		d = ResourceNotInScope
	}
	return d
}

// MatchMethod reports whether s names method: exactly, or as one method of the
// service of a "/pkg.Service/*" scope.
func (s *Scope) MatchMethod(method string) bool {
	m := s.Method
	if n := len(m); n >= 2 && m[n-1] == '*' && m[n-2] == '/' {
		prefix := m[:n-1] // "/pkg.Service/"
		if len(method) <= len(prefix) || method[:len(prefix)] != prefix {
			return false
		}
		return strings.IndexByte(method[len(prefix):], '/') < 0
	}
	return method == m
}

// MatchResource reports whether s allows resource: always when s has no
// resource patterns, otherwise when one of them matches.
func (s *Scope) MatchResource(resource string) bool {
	if len(s.Resources) == 0 {
		return true
	}
	for _, p := range s.Resources {
		if MatchResource(p, resource) {
			return true
		}
	}
	return false
}

// MatchResource reports whether resource matches pattern: the same number of
// "/"-separated segments, each equal or matched by a "*" segment. A resource
// that is not canonical ([CanonicalResource]: empty, or with an empty, "."
// or ".." segment) matches nothing. It does not allocate.
func MatchResource(pattern, resource string) bool {
	if resource == "" {
		return false
	}
	p, r := 0, 0
	for {
		// One segment of each: pattern[p:pe], resource[r:re].
		pe := p
		for pe < len(pattern) && pattern[pe] != '/' {
			pe++
		}
		re := r
		for re < len(resource) && resource[re] != '/' {
			re++
		}
		if re == r || isDots(resource[r:re]) {
			return false // empty, "." or ".." resource segment
		}
		if pe-p != 1 || pattern[p] != '*' {
			if pattern[p:pe] != resource[r:re] {
				return false
			}
		}
		pEnd, rEnd := pe == len(pattern), re == len(resource)
		if pEnd || rEnd {
			return pEnd && rEnd
		}
		p, r = pe+1, re+1
	}
}

// CanonicalResource reports whether resource is a well-formed resource name:
// non-empty segments separated by "/", none of them "." or "..". The empty
// string (no resource) is not canonical. A verifier refuses a call whose
// resource is not canonical before matching it. It does not allocate.
func CanonicalResource(resource string) bool {
	if resource == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(resource); i++ {
		if i < len(resource) && resource[i] != '/' {
			continue
		}
		if i == start || isDots(resource[start:i]) {
			return false
		}
		start = i + 1
	}
	return true
}

// isDots reports whether seg is "." or "..".
func isDots(seg string) bool { return seg == "." || seg == ".." }

// Matcher answers [Grant.Authorize] for one grant with a map lookup instead
// of a scan of its scopes: a verifier builds one per connection. It must not
// be used after the grant's scopes change.
type Matcher struct {
	scopes []Scope
	exact  map[string][]uint8 // method -> indexes of the scopes naming it
	wild   []uint8            // indexes of "/pkg.Service/*" scopes
}

// NewMatcher returns a Matcher for g's scopes.
func NewMatcher(g *Grant) *Matcher {
	m := &Matcher{scopes: g.Scopes, exact: make(map[string][]uint8, len(g.Scopes))}
	for i := range g.Scopes {
		if strings.HasSuffix(g.Scopes[i].Method, "/*") {
			m.wild = append(m.wild, uint8(i))
		} else {
			m.exact[g.Scopes[i].Method] = append(m.exact[g.Scopes[i].Method], uint8(i))
		}
	}
	return m
}

// Authorize is [Grant.Authorize] for the grant m was built from. It does not
// allocate.
func (m *Matcher) Authorize(method, resource string) Decision {
	d := MethodNotInScope
	for _, i := range m.exact[method] {
		if m.scopes[i].MatchResource(resource) {
			return Allowed
		}
		d = ResourceNotInScope
	}
	for _, i := range m.wild {
		s := &m.scopes[i]
		if !s.MatchMethod(method) {
			continue
		}
		if s.MatchResource(resource) {
			return Allowed
		}
		d = ResourceNotInScope
	}
	return d
}
