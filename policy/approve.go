package policy

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Review is one approver's verdict on a pending request.
type Review struct {
	// Approver is who reviewed.
	Approver spiffeid.ID
	// Approve is true for an approval, false for a denial.
	Approve bool
}

// Progress is where a request stands against its rule's approval factors.
type Progress struct {
	// Satisfied means every factor has its approvers: the request is
	// approved. It is never true together with Denied.
	Satisfied bool
	// Denied means an eligible approver denied the request and the rule
	// ends a request on a denial (deny_ends_request, the default).
	Denied bool
	// DeniedBy is who denied, when Denied.
	DeniedBy spiffeid.ID
	// Missing lists what is still needed: per factor with approvers
	// missing, how many more and from which groups.
	Missing []Factor
	// Counted lists the approvals counted toward the factors, in review
	// order. The issuer records them in the grant.
	Counted []spiffeid.ID
}

// EligibleApprover reports whether approver may review requester's request
// under the named rule, and if not, why: the rule is unknown, approver is
// the requester, or approver is in none of the groups of the rule's
// factors. When eligible, the string names the groups approver is in.
func (p *Policy) EligibleApprover(ruleName string, requester, approver spiffeid.ID) (bool, string) {
	r, err := p.rule(ruleName)
	if err != nil {
		return false, err.Error()
	}
	return r.eligibleApprover(requester, approver)
}

// eligibleApprover is EligibleApprover for rule r.
func (r *rule) eligibleApprover(requester, approver spiffeid.ID) (bool, string) {
	if approver.IsZero() {
		return false, "no approver identity"
	}
	if approver == requester {
		return false, "self-approval: no one approves their own request"
	}
	var in []string
	for _, f := range r.factors {
		for _, g := range f.groups {
			if g.contains(approver) && !containsString(in, g.name) {
				in = append(in, g.name)
			}
		}
	}
	if len(in) == 0 {
		return false, fmt.Sprintf("%s is not in any approver group of rule %q (%s)", approver, r.name, strings.Join(r.groupNames(), ", "))
	}
	return true, "member of " + strings.Join(in, ", ")
}

// Evaluate tallies reviews of requester's request under the named rule.
//
// The requester's own reviews, and reviews by anyone in none of the rule's
// approver groups, are ignored. Each approver counts once, by their first
// review; later reviews by the same approver are ignored. Each counted
// approver fills a slot of one factor only, and Evaluate picks the
// assignment that fills the most slots (a maximum bipartite matching), so an
// approver in the groups of two factors goes where they are needed. A denial
// by an eligible approver ends the request when the rule's deny_ends_request
// is true (the default); otherwise denials are ignored.
//
// A rule name the policy does not have is an error wrapping
// [ErrUnknownRule]: a reload removed the rule, and the caller must fail
// closed.
func (p *Policy) Evaluate(ruleName string, requester spiffeid.ID, reviews []Review) (Progress, error) {
	r, err := p.rule(ruleName)
	if err != nil {
		return Progress{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	return r.evaluate(requester, reviews), nil
}

// evaluate is Evaluate for rule r.
func (r *rule) evaluate(requester spiffeid.ID, reviews []Review) Progress {
	var prog Progress
	var people []candidate
	seen := make(map[spiffeid.ID]bool, len(reviews))
	for _, rv := range reviews {
		if rv.Approver.IsZero() || rv.Approver == requester || seen[rv.Approver] {
			continue
		}
		seen[rv.Approver] = true
		mask := r.eligibility(rv.Approver)
		if mask == 0 {
			continue
		}
		if !rv.Approve {
			if r.denyEnds && !prog.Denied {
				prog.Denied, prog.DeniedBy = true, rv.Approver
			}
			continue
		}
		people = append(people, candidate{id: rv.Approver, mask: mask})
	}
	counts := make([]int, len(r.factors))
	for i, f := range r.factors {
		counts[i] = f.count
	}
	got := assign(people, counts)
	filled := make([]int, len(r.factors))
	for i, f := range got {
		if f >= 0 {
			filled[f]++
			prog.Counted = append(prog.Counted, people[i].id)
		}
	}
	for i, f := range r.factors {
		if n := f.count - filled[i]; n > 0 {
			prog.Missing = append(prog.Missing, Factor{Count: n, Groups: append([]string(nil), f.names...)})
		}
	}
	prog.Satisfied = !prog.Denied && len(prog.Missing) == 0
	return prog
}

// eligibility returns the bitmask of the factors id may fill.
func (r *rule) eligibility(id spiffeid.ID) uint32 {
	var mask uint32
	for i, f := range r.factors {
		for _, g := range f.groups {
			if g.contains(id) {
				mask |= 1 << i
				break
			}
		}
	}
	return mask
}

func (r *rule) groupNames() []string {
	var names []string
	for _, f := range r.factors {
		for _, n := range f.names {
			if !containsString(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

func (g *group) contains(id spiffeid.ID) bool {
	for i := range g.members {
		if g.members[i].match(id) {
			return true
		}
	}
	return false
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// candidate is a possible approver and the factors (bitmask) they may fill.
type candidate struct {
	id   spiffeid.ID
	mask uint32
}

// assign finds an assignment of people to factor slots (counts[f] slots of
// factor f) that fills the most slots, by augmenting paths (Kuhn's
// algorithm; a rule has at most MaxApprovalsPerRule slots). It returns, per
// person, the factor they fill or -1.
func assign(people []candidate, counts []int) []int {
	var slotFactor []int
	for f, n := range counts {
		for range n {
			slotFactor = append(slotFactor, f)
		}
	}
	owner := make([]int, len(slotFactor))
	for i := range owner {
		owner[i] = -1
	}
	visited := make([]bool, len(slotFactor))
	var try func(a int) bool
	try = func(a int) bool {
		for s, f := range slotFactor {
			if people[a].mask&(1<<f) == 0 || visited[s] {
				continue
			}
			visited[s] = true
			if owner[s] < 0 || try(owner[s]) {
				owner[s] = a
				return true
			}
		}
		return false
	}
	filled := 0
	for a := range people {
		if filled == len(slotFactor) {
			break
		}
		clear(visited)
		if try(a) {
			filled++
		}
	}
	out := make([]int, len(people))
	for i := range out {
		out[i] = -1
	}
	for s, a := range owner {
		if a >= 0 {
			out[a] = slotFactor[s]
		}
	}
	return out
}

// bounded reports whether every member of every group of f is a fixed ID,
// so that the possible approvers are known.
func (f *factor) bounded() bool {
	for _, g := range f.groups {
		for i := range g.members {
			if !g.members[i].fixed {
				return false
			}
		}
	}
	return true
}

// fixedCandidates returns the possible approvers for the bounded factors of
// fs, with masks over those factors only, and the factors' counts. It
// returns nil, nil when no factor is bounded.
func fixedCandidates(fs []factor) ([]candidate, []int) {
	var counts []int
	var people []candidate
	pos := make(map[spiffeid.ID]int)
	for _, f := range fs {
		if !f.bounded() {
			continue
		}
		bit := uint32(1) << len(counts)
		counts = append(counts, f.count)
		for _, g := range f.groups {
			for _, m := range g.members {
				i, ok := pos[m.id]
				if !ok {
					i = len(people)
					pos[m.id] = i
					people = append(people, candidate{id: m.id})
				}
				people[i].mask |= bit
			}
		}
	}
	return people, counts
}

// distinctFixed counts the distinct members of groups, all fixed IDs.
func distinctFixed(groups []*group) int {
	seen := make(map[string]bool)
	for _, g := range groups {
		for _, m := range g.members {
			seen[m.raw] = true
		}
	}
	return len(seen)
}

// fill returns how many of the slots people can fill without the person
// exclude ("" for none).
func fill(people []candidate, counts []int, exclude string) int {
	ps := make([]candidate, 0, len(people))
	for _, p := range people {
		if p.id.String() != exclude {
			ps = append(ps, p)
		}
	}
	n := 0
	for _, f := range assign(ps, counts) {
		if f >= 0 {
			n++
		}
	}
	return n
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
