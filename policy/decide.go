package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Request is what a requester asks for, as the policy sees it.
type Request struct {
	// Requester is who asks (from the caller's SVID).
	Requester spiffeid.ID
	// Scopes are the methods and resources asked for; 1 to
	// grant.MaxScopes, each valid per grant.Scope.Validate, no duplicates.
	Scopes []grant.Scope
	// TTL is how long the grant is to last; positive.
	TTL time.Duration
	// Reason is the requester's justification, at most MaxReasonLength
	// bytes of UTF-8.
	Reason string
	// Time is when the request is made, from the caller's clock. It is
	// the `time` of auto_approve conditions and must be set.
	Time time.Time
	// BreakGlass asks for immediate issue without review.
	BreakGlass bool
	// UseLimit is the number of calls the grant is to allow; 0 means any
	// number until expiry.
	UseLimit uint32
	// Ticket is the ticket checker's answer, when the matching rule has a
	// ticket_check (see [Policy.Needs]); nil when not fetched.
	Ticket *Ticket
	// OnCall is the requester's on-call status, when the matching rule's
	// condition reads it; nil when not fetched.
	OnCall *OnCall
}

// Outcome is what a decision says to do with a request. The zero value is
// Denied.
type Outcome int

// Outcomes.
const (
	// Denied: no rule allows the request, or the matching rule's checks
	// fail. Nothing is issued.
	Denied Outcome = iota
	// NeedsApproval: the request waits (up to PendingTimeout) for the
	// approvers its Factors name.
	NeedsApproval
	// AutoApproved: the rule's auto_approve condition holds; the grant is
	// issued without review.
	AutoApproved
	// BreakGlass: the requester asked for break-glass and the rule allows
	// it; the grant is issued at once, flagged and audited, and the
	// request is listed for review after the fact by Factors.
	BreakGlass
)

// String returns the outcome as spelled in cases files: "denied",
// "needs_approval", "auto_approved" or "break_glass".
func (o Outcome) String() string {
	switch o {
	case Denied:
		return "denied"
	case NeedsApproval:
		return "needs_approval"
	case AutoApproved:
		return "auto_approved"
	case BreakGlass:
		return "break_glass"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// ParseOutcome is the inverse of [Outcome.String].
func ParseOutcome(s string) (Outcome, error) {
	for o := Denied; o <= BreakGlass; o++ {
		if o.String() == s {
			return o, nil
		}
	}
	return Denied, fmt.Errorf("policy: unknown outcome %q (want denied, needs_approval, auto_approved or break_glass)", s)
}

// Factor is one approval factor: Count distinct approvers, each a member of
// any of Groups.
type Factor struct {
	// Count is how many distinct approvers (at least 1).
	Count int
	// Groups are the group names an approver may be a member of.
	Groups []string
}

// String returns e.g. "2 approvers from [sre security]".
func (f Factor) String() string {
	noun := "approvers"
	if f.Count == 1 {
		noun = "approver"
	}
	return fmt.Sprintf("%d %s from [%s]", f.Count, noun, strings.Join(f.Groups, " "))
}

// Decision is the policy's answer to a request, and why.
type Decision struct {
	// Outcome is what to do.
	Outcome Outcome
	// Rule is the matching rule's name, "" when no rule matched.
	Rule string
	// Factors is what approval needs (NeedsApproval), or who reviews after
	// the fact (BreakGlass); nil otherwise.
	Factors []Factor
	// PendingTimeout is how long the request may wait for review.
	PendingTimeout time.Duration
	// MaxTTL is the matching rule's max_ttl.
	MaxTTL time.Duration
	// Reasons explain the decision, one human-readable line each: which
	// rule matched and why, which checks failed, what is needed.
	Reasons []string
}

// Decide applies the policy to req.
//
// It denies by default. An invalid request, or one no rule matches, is
// Denied. The matching rule is the first in file order whose requesters
// include req.Requester and whose scopes cover every requested scope; for a
// break-glass request, only rules with break_glass: true are candidates.
// The matching rule's checks (TTL, reason, use limit) are then applied, and
// any failure denies the request: later rules are not tried. Otherwise the
// outcome is BreakGlass for a break-glass request, AutoApproved when the
// auto_approve condition is true, and NeedsApproval in every other case,
// including a condition that fails to evaluate.
//
// A nil policy denies everything.
func (p *Policy) Decide(req Request) Decision {
	if p == nil {
		return deny("denied: no policy loaded")
	}
	if why := validateRequest(&req); why != "" {
		return deny("denied: invalid request: " + why)
	}
	r, pi := p.match(&req)
	if r == nil {
		return p.noMatch(&req)
	}
	d := Decision{Rule: r.name, MaxTTL: r.maxTTL, PendingTimeout: r.pendingTimeout}
	d.Reasons = make([]string, 1, 3)
	d.Reasons[0] = r.matchLines[pi]
	if req.TTL > r.maxTTL {
		d.Reasons = append(d.Reasons, fmt.Sprintf("denied: ttl %s exceeds rule max_ttl %s", fmtDuration(req.TTL), fmtDuration(r.maxTTL)))
	}
	if r.reasonRequired && req.Reason == "" {
		d.Reasons = append(d.Reasons, "denied: reason required")
	}
	if r.reasonRE != nil && req.Reason != "" && !r.reasonRE.MatchString(req.Reason) {
		d.Reasons = append(d.Reasons, fmt.Sprintf("denied: reason does not match pattern %q", r.reasonRE.String()))
	}
	if r.maxUses > 0 && (req.UseLimit == 0 || req.UseLimit > r.maxUses) {
		d.Reasons = append(d.Reasons, fmt.Sprintf("denied: use_limit %s exceeds rule max_uses %d", fmtUses(req.UseLimit), r.maxUses))
	}
	if len(d.Reasons) > 1 {
		d.Outcome = Denied
		return d
	}
	noAuto := false
	if r.ticketCheck != "" || r.usesOnCall {
		denied, failed := r.checkInputs(&req)
		switch {
		case denied != "":
			d.Reasons = append(d.Reasons, denied)
			d.Outcome = Denied
			return d
		case failed != "" && r.onError == onErrorNeedsApproval:
			d.Reasons = append(d.Reasons, failed+" (on_error: needs_approval, so not auto-approved)")
			noAuto = true
		case failed != "":
			d.Reasons = append(d.Reasons, "denied: "+failed+" (on_error: deny)")
			d.Outcome = Denied
			return d
		case r.ticketCheck != "":
			d.Reasons = append(d.Reasons, r.ticketLine(&req))
		}
	}
	switch {
	case req.BreakGlass:
		d.Outcome = BreakGlass
		d.Factors = r.factorList()
		d.Reasons = append(d.Reasons, "break-glass: issued at once, flagged and audited; review after the fact: "+strings.TrimPrefix(r.needsLine, "needs "))
	case noAuto:
		d.Outcome, d.Factors = NeedsApproval, r.factorList()
		d.Reasons = append(d.Reasons, r.needsLine)
	case r.auto != nil:
		ok, err := evalCondition(r.auto, &req)
		switch {
		case err != nil:
			d.Outcome, d.Factors = NeedsApproval, r.factorList()
			d.Reasons = append(d.Reasons, "auto_approve failed to evaluate, so not approved: "+err.Error(), r.needsLine)
		case ok:
			d.Outcome = AutoApproved
			d.Reasons = append(d.Reasons, r.autoLine)
		default:
			d.Outcome, d.Factors = NeedsApproval, r.factorList()
			d.Reasons = append(d.Reasons, r.noAutoLine, r.needsLine)
		}
	default:
		d.Outcome, d.Factors = NeedsApproval, r.factorList()
		d.Reasons = append(d.Reasons, r.needsLine)
	}
	return d
}

func deny(reason string) Decision {
	return Decision{Outcome: Denied, Reasons: []string{reason}}
}

// validateRequest returns why req is malformed, or "".
func validateRequest(req *Request) string {
	switch {
	case req.Requester.IsZero():
		return "no requester"
	case len(req.Scopes) == 0:
		return "no scopes"
	case len(req.Scopes) > grant.MaxScopes:
		return fmt.Sprintf("%d scopes, more than %d", len(req.Scopes), grant.MaxScopes)
	case req.TTL <= 0:
		return fmt.Sprintf("ttl %s: must be positive", fmtDuration(req.TTL))
	case len(req.Reason) > MaxReasonLength:
		return fmt.Sprintf("reason of %d bytes, more than %d", len(req.Reason), MaxReasonLength)
	case !utf8.ValidString(req.Reason):
		return "reason is not valid UTF-8"
	case req.Time.IsZero():
		return "no request time"
	}
	for i, s := range req.Scopes {
		if err := s.Validate(); err != nil {
			return fmt.Sprintf("scope %d: %s", i, grantMsg(err))
		}
		for j := range i {
			if req.Scopes[j].Method == s.Method && slices.Equal(req.Scopes[j].Resources, s.Resources) {
				return fmt.Sprintf("scope %d duplicates scope %d", i, j)
			}
		}
	}
	return ""
}

// match returns the first rule matching req and the index of the requester
// entry that matched, or nil. Only the rules with a scope whose method
// includes the first requested method are tried (see ruleIndex).
func (p *Policy) match(req *Request) (*rule, int) {
	exact, wild := p.index.candidates(req.Scopes[0].Method)
	for len(exact) > 0 || len(wild) > 0 {
		var ri int32
		if len(wild) == 0 || len(exact) > 0 && exact[0] < wild[0] {
			ri, exact = exact[0], exact[1:]
		} else {
			ri, wild = wild[0], wild[1:]
		}
		r := p.rules[ri]
		if req.BreakGlass && !r.breakGlass {
			continue
		}
		if id := req.Requester.String(); len(id) < len(r.reqPrefix) || id[:len(r.reqPrefix)] != r.reqPrefix {
			continue // cheap reject: no requester pattern can match
		}
		i := r.requesters.match(req.Requester)
		if i >= 0 && r.coversAll(req.Scopes) {
			return r, i
		}
	}
	return nil, -1
}

// ruleIndex lists, in file order, the rules that may cover a method: by
// exact method, and by service for rules with a "/pkg.Service/*" scope.
type ruleIndex struct {
	exact   map[string][]int32 // "/pkg.Service/Method" -> rules
	service map[string][]int32 // "/pkg.Service/" -> rules
}

func (x *ruleIndex) add(ri int, r *rule) {
	if x.exact == nil {
		x.exact, x.service = make(map[string][]int32), make(map[string][]int32)
	}
	for _, s := range r.scopes {
		m, key := x.exact, s.Method
		if strings.HasSuffix(key, "/*") {
			m, key = x.service, key[:len(key)-1]
		}
		if l := m[key]; len(l) == 0 || l[len(l)-1] != int32(ri) {
			m[key] = append(l, int32(ri))
		}
	}
}

// candidates returns the rules (two ascending lists, to be merged) whose
// scopes may include method.
func (x *ruleIndex) candidates(method string) (exact, wild []int32) {
	i := strings.LastIndexByte(method, '/')
	if i < 0 {
		return nil, nil
	}
	if method[i+1:] != "*" {
		exact = x.exact[method]
	}
	return exact, x.service[method[:i+1]]
}

// coversAll reports whether the rule's scopes cover every requested scope.
func (r *rule) coversAll(scopes []grant.Scope) bool {
	for i := range scopes {
		if !r.covers(&scopes[i]) {
			return false
		}
	}
	return true
}

// covers reports whether the rule's scopes, together, allow everything s
// asks for: its method for every one of its resource patterns, or for any
// resource when s names none.
func (r *rule) covers(s *grant.Scope) bool {
	if len(s.Resources) == 0 {
		for i := range r.scopes {
			rs := &r.scopes[i]
			if len(rs.Resources) == 0 && rs.MatchMethod(s.Method) {
				return true
			}
		}
		return false
	}
	for _, res := range s.Resources {
		if !r.coversResource(s.Method, res) {
			return false
		}
	}
	return true
}

func (r *rule) coversResource(method, res string) bool {
	for i := range r.scopes {
		rs := &r.scopes[i]
		if !rs.MatchMethod(method) {
			continue
		}
		if len(rs.Resources) == 0 {
			return true
		}
		for _, pat := range rs.Resources {
			// A requested pattern is covered when the rule pattern matches
			// it as a resource: same segments, a rule "*" covering
			// anything (a requested "*" included) in its segment.
			if grant.MatchResource(pat, res) {
				return true
			}
		}
	}
	return false
}

func (r *rule) factorList() []Factor {
	fs := make([]Factor, len(r.factors))
	for i, f := range r.factors {
		fs[i] = Factor{Count: f.count, Groups: slices.Clone(f.names)}
	}
	return fs
}
