package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/jitgrant/jitgrant/grant"
	"go.yaml.in/yaml/v3"
)

func (b *builder) rules(n *yaml.Node) {
	var env *cel.Env // built on first use: most rules have no condition
	lines := make(map[string]int)
	for i, rn := range b.c.seq(n, "rules") {
		if r := b.rule(index("rules", i), rn, &env, lines); r != nil {
			b.p.index.add(len(b.p.rules), r)
			b.p.rules = append(b.p.rules, r)
			b.p.byName[r.name] = r
		}
	}
}

// rule parses one rule. It returns nil when the rule is too broken to keep.
func (b *builder) rule(path string, n *yaml.Node, env **cel.Env, lines map[string]int) *rule {
	c := b.c
	m := c.mapping(n, path, "name", "description", "requesters", "scopes", "max_ttl", "reason",
		"approvals", "auto_approve", "break_glass", "pending_timeout", "max_uses", "deny_ends_request",
		"ticket_check", "on_error", "extend")
	if m == nil {
		return nil
	}
	r := &rule{maxTTL: b.p.maxTTL, pendingTimeout: DefaultPendingTimeout, denyEnds: true, onError: onErrorDeny}
	before := len(c.problems)

	if v, ok := m["name"]; !ok {
		c.addf(n, join(path, "name"), "required")
	} else if s, ok := c.str(v, join(path, "name")); ok {
		switch {
		case !validName(s):
			c.addf(v, join(path, "name"), "%q: must be 1 to %d characters from [A-Za-z0-9._-]", s, maxNameLength)
		case lines[s] > 0:
			c.addf(v, join(path, "name"), "%q duplicates the rule at line %d", s, lines[s])
		default:
			lines[s] = v.Line
		}
		r.name = s
	}
	if v, ok := m["description"]; ok {
		c.str(v, join(path, "description"))
	}

	var reqNodes []*yaml.Node
	if v, ok := m["requesters"]; !ok || isNull(v) || (v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
		c.addf(nodeOr(v, n), join(path, "requesters"), "required: list who may request (SPIFFE ID patterns or group names)")
	} else {
		r.requesters, reqNodes = b.principals(v, join(path, "requesters"))
	}
	if v, ok := m["scopes"]; !ok || isNull(v) || (v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
		c.addf(nodeOr(v, n), join(path, "scopes"), "required: list at least one scope")
	} else {
		r.scopes = b.scopes(v, join(path, "scopes"))
	}
	if v, ok := m["max_ttl"]; ok {
		if d, ok := c.duration(v, join(path, "max_ttl")); ok {
			switch {
			case d <= 0:
				c.addf(v, join(path, "max_ttl"), "must be positive, not %s", fmtDuration(d))
			case d > b.p.maxTTL:
				c.addf(v, join(path, "max_ttl"), "%s is above the global cap %s", fmtDuration(d), fmtDuration(b.p.maxTTL))
			default:
				r.maxTTL = d
			}
		}
	}
	if v, ok := m["reason"]; ok {
		b.reason(r, v, join(path, "reason"))
	}
	approvals, ok := m["approvals"]
	if !ok || isNull(approvals) || (approvals.Kind == yaml.SequenceNode && len(approvals.Content) == 0) {
		c.addf(nodeOr(approvals, n), join(path, "approvals"),
			"required: list at least one factor, e.g. {count: 1, from: [group]} (write auto_approve: 'true' to approve without review)")
	} else {
		factorsOK := b.factors(r, approvals, join(path, "approvals"))
		if factorsOK {
			b.checkReachable(r, approvals, path, reqNodes)
		}
	}
	if v, ok := m["auto_approve"]; ok {
		if s, ok := c.str(v, join(path, "auto_approve")); ok {
			if *env == nil {
				e, err := newCELEnv()
				if err != nil {
					c.addf(v, join(path, "auto_approve"), "%v", err)
					return nil
				}
				*env = e
			}
			prg, err := compileCondition(*env, s)
			if err != nil {
				c.addf(v, join(path, "auto_approve"), "%v", err)
			}
			r.autoSrc, r.auto = s, prg
			r.usesOnCall = prg != nil && readsOnCall(*env, s)
		}
	}
	if v, ok := m["break_glass"]; ok {
		r.breakGlass, _ = c.boolean(v, join(path, "break_glass"))
	}
	if v, ok := m["pending_timeout"]; ok {
		if d, ok := c.duration(v, join(path, "pending_timeout")); ok {
			if d < time.Second || d > MaxPendingTimeout {
				c.addf(v, join(path, "pending_timeout"), "must be between 1s and %s, not %s", fmtDuration(MaxPendingTimeout), fmtDuration(d))
			} else {
				r.pendingTimeout = d
			}
		}
	}
	if v, ok := m["max_uses"]; ok {
		r.maxUses, _ = c.uint32Value(v, join(path, "max_uses"))
	}
	if v, ok := m["deny_ends_request"]; ok {
		if d, ok := c.boolean(v, join(path, "deny_ends_request")); ok {
			r.denyEnds = d
		}
	}
	if v, ok := m["extend"]; ok {
		b.extendBlock(r, v, join(path, "extend"))
	}
	b.inputKeys(r, m, path)
	if len(c.problems) > before {
		return nil
	}
	r.explainLines()
	return r
}

func nodeOr(v, parent *yaml.Node) *yaml.Node {
	if v != nil {
		return v
	}
	return parent
}

func (b *builder) scopes(n *yaml.Node, path string) []grant.Scope {
	c := b.c
	var out []grant.Scope
	for i, sn := range c.seq(n, path) {
		sp := index(path, i)
		m := c.mapping(sn, sp, "method", "resources")
		if m == nil {
			continue
		}
		var s grant.Scope
		if v, ok := m["method"]; !ok {
			c.addf(sn, join(sp, "method"), "required")
		} else if meth, ok := c.str(v, join(sp, "method")); ok {
			if err := grant.ValidateMethod(meth); err != nil {
				c.addf(v, join(sp, "method"), "%s", grantMsg(err))
			}
			s.Method = meth
		}
		if v, ok := m["resources"]; ok {
			rp := join(sp, "resources")
			vals, nodes := c.strList(v, rp)
			if len(vals) > grant.MaxResources {
				c.addf(v, rp, "%d resource patterns, more than %d", len(vals), grant.MaxResources)
			}
			for j, res := range vals {
				if err := grant.ValidateResourcePattern(res); err != nil {
					c.addf(nodes[j], index(rp, j), "%s", grantMsg(err))
				} else if slices.Contains(vals[:j], res) {
					c.addf(nodes[j], index(rp, j), "%q duplicates an earlier resource", res)
				}
			}
			if v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
				c.addf(v, rp, "empty: omit resources to allow any resource")
			}
			s.Resources = vals
		}
		for j, o := range out {
			if o.Method == s.Method && slices.Equal(o.Resources, s.Resources) {
				c.addf(sn, sp, "duplicates %s", index(path, j))
			}
		}
		out = append(out, s)
	}
	return out
}

// grantMsg strips the "grant: invalid: " prefix from a grant validation
// error: the path already says where.
func grantMsg(err error) string {
	return strings.TrimPrefix(err.Error(), grant.ErrInvalid.Error()+": ")
}

func (b *builder) reason(r *rule, n *yaml.Node, path string) {
	c := b.c
	m := c.mapping(n, path, "required", "pattern")
	if v, ok := m["required"]; ok {
		r.reasonRequired, _ = c.boolean(v, join(path, "required"))
	}
	if v, ok := m["pattern"]; ok {
		pp := join(path, "pattern")
		if s, ok := c.str(v, pp); ok {
			if len(s) > maxRegexLength {
				c.addf(v, pp, "%d bytes, more than %d", len(s), maxRegexLength)
				return
			}
			re, err := regexp.Compile(s)
			if err != nil {
				c.addf(v, pp, "does not compile: %v", err)
				return
			}
			r.reasonRE = re
		}
	}
}

// factors parses the approval factors; it reports whether they are sound
// enough for checkReachable.
func (b *builder) factors(r *rule, n *yaml.Node, path string) bool {
	c := b.c
	before := len(c.problems)
	total := 0
	for i, fn := range c.seq(n, path) {
		fp := index(path, i)
		m := c.mapping(fn, fp, "count", "from")
		if m == nil {
			continue
		}
		var f factor
		if v, ok := m["count"]; !ok {
			c.addf(fn, join(fp, "count"), "required (how many distinct approvers)")
		} else if cnt, ok := c.integer(v, join(fp, "count")); ok {
			switch {
			case cnt < 1:
				c.addf(v, join(fp, "count"), "must be at least 1, not %d", cnt)
			case cnt > MaxApprovalsPerRule:
				c.addf(v, join(fp, "count"), "must be at most %d, not %d", MaxApprovalsPerRule, cnt)
			default:
				f.count = int(cnt)
				total += f.count
			}
		}
		v, ok := m["from"]
		if !ok || isNull(v) || (v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
			c.addf(nodeOr(v, fn), join(fp, "from"), "required: list the approver groups")
		} else {
			vals, nodes := c.strList(v, join(fp, "from"))
			for j, name := range vals {
				ep := index(join(fp, "from"), j)
				g, ok := b.p.groups[name]
				switch {
				case !ok && strings.Contains(name, "://"):
					c.addf(nodes[j], ep, "%q: approvers must be a group name (define a group with this member)", name)
				case !ok:
					c.addf(nodes[j], ep, "group %q is not defined", name)
				case slices.Contains(vals[:j], name):
					c.addf(nodes[j], ep, "group %q listed twice", name)
				default:
					b.used[name] = true
					f.names = append(f.names, name)
					f.groups = append(f.groups, g)
				}
			}
		}
		r.factors = append(r.factors, f)
	}
	if total > MaxApprovalsPerRule {
		c.addf(n, path, "needs %d approvers in all, more than the %d a grant can list", total, MaxApprovalsPerRule)
	}
	return len(c.problems) == before
}

// checkReachable reports rules that could never be approved: a factor, or
// the factors together, needing more distinct approvers than the groups can
// ever supply (knowable when the groups list fixed IDs only), or a listed
// requester whose request could be approved only by itself. A wildcard
// requester that is one of the few possible approvers is a warning.
func (b *builder) checkReachable(r *rule, n *yaml.Node, path string, reqNodes []*yaml.Node) {
	c := b.c
	ap := join(path, "approvals")
	people, counts := fixedCandidates(r.factors)
	if people == nil && counts == nil {
		return // every factor draws on a wildcard pattern: unbounded
	}
	for i, f := range r.factors {
		if !f.bounded() {
			continue
		}
		if members := distinctFixed(f.groups); f.count > members {
			c.addf(n.Content[i], index(ap, i)+".count", "%d is more than the %d distinct members of %v: the rule could never be approved",
				f.count, members, f.names)
			return
		}
	}
	need := sum(counts)
	if got := fill(people, counts, ""); got < need {
		c.addf(n, ap, "needs %d distinct approvers from groups of fixed members but they can supply only %d (an approver counts toward one factor only)", need, got)
		return
	}
	for i, pr := range r.requesters {
		if pr.pat.fixed {
			if got := fill(people, counts, pr.pat.raw); got < need {
				c.addf(reqNodes[i], join(path, "requesters"), "requester %q could never be approved: no one approves their own request, and the others can supply only %d of the %d approvers needed",
					pr.pat.raw, got, need)
			}
			continue
		}
		for _, p := range people {
			if pr.pat.match(p.id) && fill(people, counts, p.id.String()) < need {
				b.p.warnings = append(b.p.warnings, fmt.Sprintf("line %d: %s: requests by %s (it matches %q) can never be approved: too few other approvers",
					reqNodes[i].Line, join(path, "requesters"), p.id, pr.pat.raw))
			}
		}
	}
}

// inputKeys parses ticket_check and on_error. A ticket check needs a
// required reason whose pattern captures the ticket ID: its group named
// "ticket", or its first group.
func (b *builder) inputKeys(r *rule, m map[string]*yaml.Node, path string) {
	c := b.c
	if v, ok := m["ticket_check"]; ok {
		tp := join(path, "ticket_check")
		if s, ok := c.str(v, tp); ok {
			switch {
			case !validName(s):
				c.addf(v, tp, "%q: must be 1 to %d characters from [A-Za-z0-9._-] (the name of a ticket checker in jitd's configuration)", s, maxNameLength)
			case !r.reasonRequired || r.reasonRE == nil:
				c.addf(v, tp, "needs reason: {required: true, pattern: ...} whose pattern captures the ticket ID, e.g. '^(?P<ticket>INC-[0-9]+): .+'")
			case r.reasonRE.NumSubexp() == 0:
				c.addf(v, tp, "reason pattern %q captures no ticket ID: add a group, e.g. (?P<ticket>INC-[0-9]+)", r.reasonRE.String())
			default:
				r.ticketCheck = s
			}
		}
	}
	if v, ok := m["on_error"]; ok {
		ep := join(path, "on_error")
		if s, ok := c.str(v, ep); ok {
			switch s {
			case onErrorDeny, onErrorNeedsApproval:
				r.onError = s
			default:
				c.addf(v, ep, "%q: want deny or needs_approval", s)
			}
			if r.ticketCheck == "" && !r.usesOnCall && s != "" {
				b.p.warnings = append(b.p.warnings, fmt.Sprintf("line %d: %s: has no effect: the rule has no ticket_check and its auto_approve does not read oncall", v.Line, ep))
			}
		}
	}
}
