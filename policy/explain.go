package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
)

// Explain renders d for people, one fact per line, as `jitctl request
// --dry-run` and `jitctl policy test` print it.
func (d Decision) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome: %s\n", d.Outcome)
	if d.Rule != "" {
		fmt.Fprintf(&b, "rule: %s\n", d.Rule)
	} else {
		b.WriteString("rule: (none)\n")
	}
	if len(d.Factors) > 0 {
		label := "needs"
		if d.Outcome == BreakGlass {
			label = "review after the fact"
		}
		fmt.Fprintf(&b, "%s: %s\n", label, factorsPhrase(d.Factors))
	}
	if d.Outcome != Denied {
		fmt.Fprintf(&b, "max_ttl: %s\n", fmtDuration(d.MaxTTL))
	}
	if d.Outcome == NeedsApproval {
		fmt.Fprintf(&b, "pending_timeout: %s\n", fmtDuration(d.PendingTimeout))
	}
	if len(d.Reasons) > 0 {
		b.WriteString("why:\n")
		for _, r := range d.Reasons {
			fmt.Fprintf(&b, "  - %s\n", r)
		}
	}
	return b.String()
}

// factorsPhrase returns e.g. "1 approver from [sre] and 2 from [security]".
func factorsPhrase(fs []Factor) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		if i == 0 {
			parts[i] = f.String()
		} else {
			parts[i] = fmt.Sprintf("%d from [%s]", f.Count, strings.Join(f.Groups, " "))
		}
	}
	return strings.Join(parts, " and ")
}

// explainLines builds the explanation lines Decide uses, and the requester
// prefix it checks first, once per rule.
func (r *rule) explainLines() {
	r.reqPrefix = r.requesters.commonPrefix()
	r.matchLines = make([]string, len(r.requesters))
	for i := range r.requesters {
		r.matchLines[i] = fmt.Sprintf("rule %q matched: requester matches %s", r.name, r.requesters[i].describe())
	}
	fs := make([]Factor, len(r.factors))
	for i, f := range r.factors {
		fs[i] = Factor{Count: f.count, Groups: f.names}
	}
	r.needsLine = "needs " + factorsPhrase(fs)
	r.autoLine = fmt.Sprintf("auto-approved: auto_approve is true: %s", r.autoSrc)
	r.noAutoLine = fmt.Sprintf("auto_approve is false: %s", r.autoSrc)
}

// noMatch explains a request no rule matches.
func (p *Policy) noMatch(req *Request) Decision {
	if req.BreakGlass {
		plain := *req
		plain.BreakGlass = false
		if r, _ := p.match(&plain); r != nil {
			return deny(fmt.Sprintf("denied: break-glass not allowed: rule %q matches but does not allow break-glass, and no rule that does matches", r.name))
		}
	}
	var mine []*rule
	for _, r := range p.rules {
		if r.requesters.match(req.Requester) >= 0 && (!req.BreakGlass || r.breakGlass) {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		if req.BreakGlass {
			return deny(fmt.Sprintf("denied: no break-glass rule lists requester %s", req.Requester))
		}
		return deny(fmt.Sprintf("denied: no rule lists requester %s", req.Requester))
	}
	names := make([]string, len(mine))
	for i, r := range mine {
		names[i] = r.name
	}
	reasons := []string{fmt.Sprintf("denied: no rule matches: rules listing requester %s: %s", req.Requester, strings.Join(names, ", "))}
	for i := range req.Scopes {
		covered := false
		for _, r := range mine {
			if r.covers(&req.Scopes[i]) {
				covered = true
				break
			}
		}
		if !covered {
			reasons = append(reasons, "no rule for this requester covers scope "+fmtScope(req.Scopes[i]))
		}
	}
	if len(reasons) == 1 {
		reasons = append(reasons, "each scope is covered by some rule, but no one rule covers them all: request them separately")
	}
	return Decision{Outcome: Denied, Reasons: reasons}
}

func fmtScope(s grant.Scope) string {
	if len(s.Resources) == 0 {
		return s.Method + " (any resource)"
	}
	return s.Method + " [" + strings.Join(s.Resources, " ") + "]"
}

// fmtDuration formats d without zero units: "15m", "1h", "1h30m", "90s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func fmtUses(n uint32) string {
	if n == 0 {
		return "0 (unlimited)"
	}
	return strconv.FormatUint(uint64(n), 10)
}
