package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// builder turns a checked YAML tree into a Policy, collecting problems.
type builder struct {
	c    *checker
	p    *Policy
	used map[string]bool // groups referenced by a rule or permission
}

func parse(file string, data []byte, opts Options) (*Policy, error) {
	maxCap, err := opts.maxTTLCap()
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy: %s: larger than %d bytes", nameOr(file), MaxFileSize)
	}
	c := &checker{}
	present, line, problem := checksumState(data)
	if problem != "" {
		// The file is not the one its checksum describes: nothing else
		// in it is worth reporting.
		c.addf(&yaml.Node{Line: line}, "", "%s", problem)
		return nil, c.err(file)
	}
	root := c.decodeDocument(data)
	if root == nil {
		return nil, c.err(file)
	}
	top := c.mapping(root, "", "version", "max_ttl", "groups", "permissions", "rules")
	if top == nil {
		return nil, c.err(file)
	}
	p := &Policy{
		hash:   hashOf(data),
		maxTTL: maxCap,
		groups: make(map[string]*group),
		perms:  make(map[Permission]principals),
		byName: make(map[string]*rule),
	}
	b := &builder{c: c, p: p, used: make(map[string]bool)}
	p.checksummed = present

	if n, ok := top["version"]; !ok {
		c.addf(root, "version", "required (write version: 1)")
	} else if v, ok := c.integer(n, "version"); ok && v != 1 {
		c.addf(n, "version", "unsupported version %d (this jitgrant reads version 1)", v)
	}
	if n, ok := top["max_ttl"]; ok {
		if d, ok := c.duration(n, "max_ttl"); ok {
			switch {
			case d <= 0:
				c.addf(n, "max_ttl", "must be positive, not %s", fmtDuration(d))
			case d > maxCap:
				c.addf(n, "max_ttl", "%s is above the global cap %s (the operator may raise the cap, up to %s)",
					fmtDuration(d), fmtDuration(maxCap), fmtDuration(MaxTTLCapLimit))
			default:
				p.maxTTL = d
			}
		}
	}
	if n, ok := top["groups"]; ok {
		b.groups(n)
	}
	if n, ok := top["permissions"]; ok {
		b.permissions(n)
	}
	if n, ok := top["rules"]; ok {
		b.rules(n)
	}
	if len(p.rules) == 0 {
		p.warnings = append(p.warnings, "no rules: every request is denied")
	}
	for _, name := range b.groupOrder() {
		if !b.used[name] {
			p.warnings = append(p.warnings, fmt.Sprintf("group %s is defined but no rule or permission uses it", name))
		}
	}
	if err := c.err(file); err != nil {
		return nil, err
	}
	p.settings = settingsOf(root)
	return p, nil
}

func nameOr(file string) string {
	if file == "" {
		return "policy"
	}
	return file
}

// groupOrder returns group names sorted, for deterministic warnings.
func (b *builder) groupOrder() []string {
	names := make([]string, 0, len(b.p.groups))
	for n := range b.p.groups {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (b *builder) groups(n *yaml.Node) {
	c := b.c
	for _, kv := range c.entries(n, "groups") {
		name, path := kv[0].Value, join("groups", kv[0].Value)
		if !validName(name) {
			c.addf(kv[0], path, "group name must be 1 to %d characters from [A-Za-z0-9._-]", maxNameLength)
		}
		g := &group{name: name}
		b.p.groups[name] = g // even when broken, so references do not cascade
		m := c.mapping(kv[1], path, "members", "description")
		if m == nil {
			continue
		}
		if d, ok := m["description"]; ok {
			c.str(d, join(path, "description"))
		}
		mpath := join(path, "members")
		mn, ok := m["members"]
		if !ok || isNull(mn) || (mn.Kind == yaml.SequenceNode && len(mn.Content) == 0) {
			at := kv[1]
			if ok {
				at = mn
			}
			c.addf(at, mpath, "a group nobody is in: list at least one member (a SPIFFE ID or ID pattern)")
			continue
		}
		vals, nodes := c.strList(mn, mpath)
		for i, v := range vals {
			ep := index(mpath, i)
			pat, err := parseIDPattern(v)
			if err != nil {
				c.addf(nodes[i], ep, "%q: %v", v, err)
				continue
			}
			if j := indexOfPattern(g.members, v); j >= 0 {
				c.addf(nodes[i], ep, "%q duplicates an earlier member", v)
				continue
			}
			g.members = append(g.members, pat)
		}
	}
}

func indexOfPattern(ps []idPattern, raw string) int {
	for i := range ps {
		if ps[i].raw == raw {
			return i
		}
	}
	return -1
}

// principals parses a list whose entries are group names or SPIFFE ID
// patterns, expanding groups into their members. It also returns, for each
// principal, the node of the entry it came from.
func (b *builder) principals(n *yaml.Node, path string) (principals, []*yaml.Node) {
	c := b.c
	var out principals
	var from []*yaml.Node
	vals, nodes := c.strList(n, path)
	seen := make(map[string]bool)
	for i, v := range vals {
		ep := index(path, i)
		if seen[v] {
			c.addf(nodes[i], ep, "%q duplicates an earlier entry", v)
			continue
		}
		seen[v] = true
		if strings.Contains(v, ":") || strings.Contains(v, "/") {
			pat, err := parseIDPattern(v)
			if err != nil {
				c.addf(nodes[i], ep, "%q: %v", v, err)
				continue
			}
			out = append(out, principal{pat: pat})
			from = append(from, nodes[i])
			continue
		}
		g, ok := b.p.groups[v]
		if !ok {
			c.addf(nodes[i], ep, "group %q is not defined (define it under groups, or write a SPIFFE ID pattern)", v)
			continue
		}
		b.used[v] = true
		for _, m := range g.members {
			out = append(out, principal{pat: m, group: v})
			from = append(from, nodes[i])
		}
	}
	return out, from
}

func (b *builder) permissions(n *yaml.Node) {
	known := []string{string(ListAll), string(RevokeAny), string(ExportAudit), string(WatchRevocations)}
	m := b.c.mapping(n, "permissions", known...)
	for _, k := range known {
		if v, ok := m[k]; ok {
			b.p.perms[Permission(k)], _ = b.principals(v, join("permissions", k))
		}
	}
}

// validName reports whether s is a rule or group name: 1 to 64 characters
// from [A-Za-z0-9._-].
func validName(s string) bool {
	if s == "" || len(s) > maxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}
