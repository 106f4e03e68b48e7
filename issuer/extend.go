package issuer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The states of an extension.
const (
	ExtensionPending  = "PENDING"
	ExtensionApproved = "APPROVED"
	ExtensionDenied   = "DENIED"
	// ExtensionLapsed is how the API shows an extension left pending when
	// its grant ended (the store keeps it PENDING: see Extension.Shown).
	ExtensionLapsed = "LAPSED"
)

// Shown returns the state of x to show for a grant in state grant: a
// pending extension of a grant that has ended lapsed with it.
func (x Extension) Shown(grant State) string {
	if x.State == ExtensionPending && grant.Final() {
		return ExtensionLapsed
	}
	return x.State
}

// Extension is a request to push an issued grant's end later, and its
// outcome. A grant has at most one pending extension, the last of
// Request.Extensions; one still pending when the grant ends lapses with it.
type Extension struct {
	// Seq numbers the grant's extensions from 1.
	Seq int `json:"seq"`
	// TTL is how much later the grant is to end.
	TTL time.Duration `json:"ttl"`
	// Reason is the holder's reason.
	Reason string `json:"reason,omitempty"`
	// State is ExtensionPending, ExtensionApproved or ExtensionDenied.
	State string `json:"state"`
	// Reviews are the approvers' words on it (none when auto-approved).
	Reviews []Review `json:"reviews,omitempty"`
	// CreateTime is when it was asked for.
	CreateTime time.Time `json:"create_time"`
	// NotAfter is the grant's end it set, once approved.
	NotAfter time.Time `json:"not_after,omitzero"`
}

// pendingExtension returns r's pending extension, or nil.
func (r *Request) pendingExtension() *Extension {
	if n := len(r.Extensions); n > 0 && r.Extensions[n-1].State == ExtensionPending {
		return &r.Extensions[n-1]
	}
	return nil
}

// approvedExtensions counts r's approved extensions.
func (r *Request) approvedExtensions() int {
	n := 0
	for _, x := range r.Extensions {
		if x.State == ExtensionApproved {
			n++
		}
	}
	return n
}

// MaxExtendTTL bounds one extension; the rule's extend.max_total bounds the
// grant's whole life.
const MaxExtendTTL = 24 * time.Hour

// Extend asks to push caller's issued grant id later by ttl, for reason.
// Policy decides (policy.DecideExtend): a rule without an extend: block,
// an extension past its max_total or max_count, is refused with
// ErrPermission and nothing is stored; an auto-approved one moves the
// grant's end at once; any other waits, pending, for the approvals the
// rule's requests need (see ReviewWith), until the grant ends. An
// approved extension keeps the grant's ID; a CSR grant gets a new
// certificate for its stored public key (FetchGrant), a Workload API grant
// a new SVID on its open streams.
func (is *Issuer) Extend(ctx context.Context, caller spiffeid.ID, id string, ttl time.Duration, reason string) (*Request, error) {
	p, err := is.policy()
	if err != nil {
		return nil, err
	}
	return is.changeSteps(ctx, &Request{ID: id}, func(r *Request, s *steps) error {
		if r.Requester != caller.String() {
			return fmt.Errorf("%w: only the holder may extend grant %s", ErrPermission, id)
		}
		if ttl <= 0 || ttl > MaxExtendTTL {
			return fmt.Errorf("%w: ttl: must be a duration in (0s, %s], not %s", ErrInvalid, MaxExtendTTL, ttl)
		}
		if len(reason) > MaxCommentLength {
			return fmt.Errorf("%w: reason: %d bytes, at most %d", ErrInvalid, len(reason), MaxCommentLength)
		}
		now := is.now()
		if r.State != StateIssued || !now.Before(r.NotAfter) {
			return fmt.Errorf("%w: request %s is %s; only an issued grant before its end can be extended", ErrState, id, r.State)
		}
		if r.pendingExtension() != nil {
			return fmt.Errorf("%w: grant %s already has an extension pending review", ErrState, id)
		}
		requester, err := spiffeid.FromString(r.Requester)
		if err != nil {
			return fmt.Errorf("issuer: request %s: requester: %w", id, err)
		}
		end := r.NotAfter.Add(ttl).Truncate(time.Second)
		d := p.DecideExtend(policy.ExtendRequest{
			Rule: r.Rule, Requester: requester, GrantID: r.ID, Total: end.Sub(r.StartTime),
			Count: r.approvedExtensions(), TTL: ttl, Reason: reason, Time: now,
		})
		if d.Outcome == policy.Denied {
			return fmt.Errorf("%w: extending grant %s: %s", ErrPermission, id, d.Reason)
		}
		x := Extension{Seq: len(r.Extensions) + 1, TTL: ttl, Reason: reason, State: ExtensionPending, CreateTime: now}
		r.Extensions = append(append([]Extension(nil), r.Extensions...), x)
		details := map[string]string{"extension": strconv.Itoa(x.Seq), "ttl": ttl.String(), "outcome": d.Outcome.String(), "decision": d.Reason}
		if reason != "" {
			details["reason"] = reason
		}
		s.add(r, record(caller, audit.ActionGrantExtensionRequested, details))
		if d.Outcome == policy.AutoApproved {
			return is.applyExtension(r, s, is.cfg.ID)
		}
		return nil
	})
}

// applyExtension approves r's pending extension, decided by actor: the
// grant's end moves, a CSR grant's certificate is minted again, and the
// expiring notice is planned for the new end.
func (is *Issuer) applyExtension(r *Request, s *steps, actor spiffeid.ID) error {
	x := r.pendingExtension()
	now := is.now()
	prev := r.NotAfter
	r.NotAfter = r.NotAfter.Add(x.TTL).Truncate(time.Second)
	details := map[string]string{"extension": strconv.Itoa(x.Seq), "previous_not_after": prev.Format(time.RFC3339)}
	if caEnd := is.cfg.CA.Certificate().NotAfter; r.NotAfter.After(caEnd) {
		r.NotAfter = caEnd.Truncate(time.Second) // no SVID of it may outlive the CA
	}
	if r.PublicKey != nil {
		pub, err := parsePublicKey(r)
		if err != nil {
			return err
		}
		svid, err := is.mint(r, pub)
		if err != nil {
			return err
		}
		r.CertChain = chainDER(svid)
		r.Serial = fmt.Sprintf("%x", svid.Certificates[0].SerialNumber)
		r.NotAfter = svid.Certificates[0].NotAfter
		details["serial"] = r.Serial
	}
	if !r.NotAfter.After(prev) {
		return fmt.Errorf("%w: grant %s cannot outlive the issuer's CA (its end stays %s)", ErrState, r.ID, prev.Format(time.RFC3339))
	}
	x.State, x.NotAfter = ExtensionApproved, r.NotAfter
	details["not_after"] = r.NotAfter.Format(time.RFC3339)
	is.planExpiring(r, now)
	s.add(r, record(actor, audit.ActionGrantExtended, details))
	return nil
}

// reviewExtension records caller's review of r's pending extension x
// (ReviewWith on an issued grant with one pending): under the rule's
// approvals, an approval that satisfies them extends the grant, an
// eligible denial refuses the extension and the grant ends as before.
func (is *Issuer) reviewExtension(p *policy.Policy, caller, requester spiffeid.ID, r *Request, in ReviewInput, s *steps, res *ReviewResult) error {
	x := r.pendingExtension()
	for _, rv := range x.Reviews {
		if rv.Approver == caller.String() && rv.Approve == in.Approve {
			res.Counted, res.Note = false, fmt.Sprintf("%s already reviewed extension %d of grant %s this way; a review counts once", caller, x.Seq, r.ID)
			return errSkip
		}
	}
	r.Extensions = append([]Extension(nil), r.Extensions...)
	x = r.pendingExtension()
	x.Reviews = append(append([]Review(nil), x.Reviews...), Review{Approver: caller.String(), Approve: in.Approve, Comment: in.Comment, Time: is.now()})
	prog, err := p.EvaluateExtension(r.Rule, requester, policyReviews(x.Reviews))
	if err != nil {
		return fmt.Errorf("%w: request %s: %v", ErrState, r.ID, err)
	}
	details := map[string]string{"extension": strconv.Itoa(x.Seq), "approve": fmt.Sprint(in.Approve)}
	if in.Comment != "" {
		details["comment"] = in.Comment
	}
	switch {
	case !in.Approve && !prog.Denied:
		details["outcome"] = "denial recorded (the rule's denials do not end requests); still pending"
		s.add(r, record(caller, audit.ActionGrantExtensionReviewed, details))
		return nil
	case prog.Denied:
		x.State = ExtensionDenied
		details["outcome"] = "denied: the grant ends as before"
		s.add(r, record(caller, audit.ActionGrantExtensionDenied, details))
		return nil
	case prog.Satisfied:
		return is.applyExtension(r, s, caller)
	}
	details["outcome"] = "still pending: needs " + factorText(prog.Missing)
	s.add(r, record(caller, audit.ActionGrantExtensionReviewed, details))
	return nil
}
