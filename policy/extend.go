package policy

import (
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// extendRule is a rule's `extend:` block: whether and how an issued grant
// of the rule may be pushed later. A rule without one refuses extensions.
type extendRule struct {
	maxTotal time.Duration // cap on the grant's whole life, start to end; 0: the rule's max_ttl
	maxCount int           // how many extensions a grant may get; 0: no limit
	autoSrc  string
	auto     cel.Program // nil: every extension needs approval
	factors  []factor    // the approvals an extension needs; nil: the rule's own
}

// extensionRule returns the rule whose approvals an extension of a grant
// of the named rule needs: the rule itself, with its extend: block's
// approvals when it has them.
func (p *Policy) extensionRule(ruleName string) (*rule, error) {
	r, err := p.rule(ruleName)
	if err != nil || r.extend == nil || r.extend.factors == nil {
		return r, err
	}
	view := *r
	view.factors = r.extend.factors
	return &view, nil
}

// EligibleExtensionApprover is EligibleApprover for an extension of a
// grant of the named rule: its extend: block's approvals, or the rule's.
func (p *Policy) EligibleExtensionApprover(ruleName string, requester, approver spiffeid.ID) (bool, string) {
	r, err := p.extensionRule(ruleName)
	if err != nil {
		return false, err.Error()
	}
	return r.eligibleApprover(requester, approver)
}

// EvaluateExtension is Evaluate for an extension of a grant of the named
// rule: its extend: block's approvals, or the rule's.
func (p *Policy) EvaluateExtension(ruleName string, requester spiffeid.ID, reviews []Review) (Progress, error) {
	r, err := p.extensionRule(ruleName)
	if err != nil {
		return Progress{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	return r.evaluate(requester, reviews), nil
}

// ExtendRequest is an extension asked of an issued grant, for
// DecideExtend.
type ExtendRequest struct {
	// Rule is the grant's rule.
	Rule string
	// Requester is the grant's holder, who asks for the extension.
	Requester spiffeid.ID
	// GrantID is the grant's ID.
	GrantID string
	// Total is the grant's whole life, from its start to its end once
	// extended.
	Total time.Duration
	// Count is how many extensions the grant has had, not counting this one.
	Count int
	// TTL is how much later the grant would end.
	TTL time.Duration
	// Reason is the requester's reason for the extension.
	Reason string
	// Time is the time of the request, the `time` of the condition.
	Time time.Time
}

// ExtendDecision is DecideExtend's answer: Denied (Reason says why),
// NeedsApproval (the rule's approvals) or AutoApproved.
type ExtendDecision struct {
	Outcome Outcome
	Reason  string
}

// DecideExtend decides an extension of a grant of rule req.Rule: denied
// when the rule has no `extend:` block, when the grant would last longer
// than its max_total, or when it has had max_count extensions already;
// auto-approved when the block's auto_approve condition holds; otherwise
// it needs the approvals the rule's requests need.
func (p *Policy) DecideExtend(req ExtendRequest) ExtendDecision {
	r, err := p.rule(req.Rule)
	if err != nil {
		return ExtendDecision{Outcome: Denied, Reason: err.Error()}
	}
	x := r.extend
	switch {
	case x == nil:
		return ExtendDecision{Outcome: Denied, Reason: fmt.Sprintf("rule %q allows no extension (it has no extend: block)", r.name)}
	case req.TTL <= 0:
		return ExtendDecision{Outcome: Denied, Reason: "the extension's ttl must be positive"}
	case x.maxCount > 0 && req.Count >= x.maxCount:
		return ExtendDecision{Outcome: Denied, Reason: fmt.Sprintf("rule %q allows at most %d extensions of a grant, and it has had %d", r.name, x.maxCount, req.Count)}
	}
	limit := x.maxTotal
	if limit == 0 {
		limit = r.maxTTL
	}
	if req.Total > limit {
		return ExtendDecision{Outcome: Denied, Reason: fmt.Sprintf("rule %q caps a grant's total duration at %s; extended, it would last %s", r.name, fmtDuration(limit), fmtDuration(req.Total))}
	}
	if x.auto != nil {
		ok, err := evalExtend(x.auto, req)
		if err != nil {
			return ExtendDecision{Outcome: NeedsApproval, Reason: "extend.auto_approve failed to evaluate, so not approved: " + err.Error()}
		}
		if ok {
			return ExtendDecision{Outcome: AutoApproved, Reason: "extend.auto_approve condition is true: " + x.autoSrc}
		}
	}
	if x.factors != nil {
		view := *r
		view.factors = x.factors
		return ExtendDecision{Outcome: NeedsApproval, Reason: "needs the extension approvals of rule " + fmt.Sprintf("%q: %s", r.name, view.groupNames())}
	}
	return ExtendDecision{Outcome: NeedsApproval, Reason: "needs the approvals of rule " + fmt.Sprintf("%q", r.name)}
}

// newExtendEnv declares the variables of an extend.auto_approve condition.
func newExtendEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("requester", cel.StringType),
		cel.Variable("grant.id", cel.StringType),
		cel.Variable("grant.total", cel.DurationType),
		cel.Variable("grant.extensions", cel.IntType),
		cel.Variable("extension.ttl", cel.DurationType),
		cel.Variable("extension.reason", cel.StringType),
		cel.Variable("time", cel.TimestampType),
		cel.ParserExpressionSizeLimit(maxExprLength),
		cel.ParserRecursionLimit(64),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return env, nil
}

// evalExtend runs an extend.auto_approve condition against req.
func evalExtend(prg cel.Program, req ExtendRequest) (bool, error) {
	out, _, err := prg.Eval(map[string]any{
		"requester":        types.String(req.Requester.String()),
		"grant.id":         types.String(req.GrantID),
		"grant.total":      types.Duration{Duration: req.Total},
		"grant.extensions": types.Int(req.Count),
		"extension.ttl":    types.Duration{Duration: req.TTL},
		"extension.reason": types.String(req.Reason),
		"time":             types.Timestamp{Time: req.Time},
	})
	if err != nil {
		return false, err
	}
	return celBool(out)
}

// extendBlock parses a rule's extend: block.
func (b *builder) extendBlock(r *rule, n *yaml.Node, path string) {
	c := b.c
	m := c.mapping(n, path, "max_total", "max_count", "approvals", "auto_approve")
	if m == nil {
		return
	}
	x := &extendRule{}
	if v, ok := m["max_total"]; ok {
		if d, ok := c.duration(v, join(path, "max_total")); ok {
			switch {
			case d <= 0:
				c.addf(v, join(path, "max_total"), "must be positive, not %s", fmtDuration(d))
			case d > b.p.maxTTL:
				c.addf(v, join(path, "max_total"), "%s is above the global cap %s", fmtDuration(d), fmtDuration(b.p.maxTTL))
			default:
				x.maxTotal = d
			}
		}
	}
	if v, ok := m["max_count"]; ok {
		if i, ok := c.integer(v, join(path, "max_count")); ok {
			if i < 0 || i > 1000 {
				c.addf(v, join(path, "max_count"), "must be between 0 (no limit) and 1000, not %d", i)
			} else {
				x.maxCount = int(i)
			}
		}
	}
	if v, ok := m["approvals"]; ok {
		if isNull(v) || (v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
			c.addf(v, join(path, "approvals"), "empty: omit it to need the rule's own approvals")
		} else {
			tmp := &rule{name: r.name}
			if b.factors(tmp, v, join(path, "approvals")) {
				x.factors = tmp.factors
			}
		}
	}
	if v, ok := m["auto_approve"]; ok {
		if s, ok := c.str(v, join(path, "auto_approve")); ok {
			env, err := newExtendEnv()
			if err != nil {
				c.addf(v, join(path, "auto_approve"), "%v", err)
				return
			}
			prg, err := compileCondition(env, s)
			if err != nil {
				c.addf(v, join(path, "auto_approve"), "%v", err)
			}
			x.autoSrc, x.auto = s, prg
		}
	}
	r.extend = x
}
