package issuer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxCommentLength bounds a review comment and a revocation reason.
const MaxCommentLength = 1024

// The verdicts of a concluded after-the-fact review of a break-glass grant
// (Request.ReviewVerdict).
const (
	VerdictApproved = "approved"
	VerdictDenied   = "denied"
)

// ReviewInput is one review of a request.
type ReviewInput struct {
	// Approve is true for an approval, false for a denial.
	Approve bool
	// Comment is recorded with the review; at most MaxCommentLength bytes.
	Comment string
	// Revoke, with a denial, also revokes the request's grant if it is
	// approved or issued (a break-glass grant under review), in the same
	// commit as the denial. A request without a live grant (pending, or
	// already expired or revoked) has nothing to revoke.
	Revoke bool
	// AckWait is how long a revocation waits for verifiers'
	// acknowledgements, as in Revoke.
	AckWait time.Duration
}

// ReviewResult is the outcome of a review.
type ReviewResult struct {
	Request *Request
	// Counted is false when the review changed nothing (the same approver
	// approving twice); Note says why.
	Counted bool
	Note    string
	// Revoked is true when the review revoked the grant (ReviewInput.Revoke);
	// Following and Acknowledged are then as in RevokeResult.
	Revoked                 bool
	Following, Acknowledged int
}

// Review records caller's approval (approve) or denial of a request; see
// ReviewWith.
func (is *Issuer) Review(ctx context.Context, caller spiffeid.ID, id string, approve bool, comment string) (*ReviewResult, error) {
	return is.ReviewWith(ctx, caller, id, ReviewInput{Approve: approve, Comment: comment})
}

// ReviewWith records caller's review of a pending request, of a
// break-glass grant after the fact, or of the pending extension of an
// issued grant (see Extend; the rule's approvals apply as to a request).
//
// The requester cannot review their own request; a caller outside the
// rule's approver groups is refused; an approver counts once. When the
// approvals of a pending request satisfy every factor the request is
// approved, and issued at once unless it is scheduled later; an eligible
// denial ends it.
//
// A break-glass grant was issued at once and flagged NeedsReview. Its
// rule's approvers review it after the fact, under the same rules and in
// whatever state it is now: an expired or revoked grant still owes its
// review, which is about accountability, not access. Each review is
// recorded with its comment. When the approvals satisfy every factor, or
// an eligible denial would have ended a pending request, the review
// concludes: the flag clears and ReviewVerdict says how, in an entry of
// its own (grant.reviewed) committed with the review that concluded it.
// A concluded review takes no more reviews. A denial with in.Revoke set
// also revokes the grant if it is still live. The caller's eligibility is
// checked before the other arguments.
func (is *Issuer) ReviewWith(ctx context.Context, caller spiffeid.ID, id string, in ReviewInput) (*ReviewResult, error) {
	p, err := is.policy()
	if err != nil {
		return nil, err
	}
	res := &ReviewResult{Counted: true}
	r, err := is.changeSteps(ctx, &Request{ID: id}, func(r *Request, s *steps) error {
		requester, err := spiffeid.FromString(r.Requester)
		if err != nil {
			return fmt.Errorf("issuer: request %s: requester: %w", id, err)
		}
		eligible := p.EligibleApprover
		if r.State == StateIssued && r.pendingExtension() != nil && !r.NeedsReview {
			eligible = p.EligibleExtensionApprover
		}
		if ok, why := eligible(r.Rule, requester, caller); !ok {
			is.metrics.reviewsRefused.Add(1)
			is.metrics.reviews.WithLabelValues(verdictRefused).Inc()
			return fmt.Errorf("%w: %s may not review request %s: %s", ErrPermission, caller, id, why)
		}
		if err := in.check(); err != nil {
			return err
		}
		if r.State == StateIssued && r.pendingExtension() != nil && !r.NeedsReview {
			if in.Revoke {
				return fmt.Errorf("%w: revoke: a review of grant %s's extension does not revoke it (revoke it with RevokeGrant)", ErrInvalid, id)
			}
			return is.reviewExtension(p, caller, requester, r, in, s, res)
		}
		if r.State != StatePending && !r.BreakGlass {
			return fmt.Errorf("%w: request %s is %s, not PENDING", ErrState, id, r.State)
		}
		if r.BreakGlass && !r.NeedsReview {
			return fmt.Errorf("%w: the review of break-glass grant %s has concluded (%s); to end the grant, revoke it", ErrState, id, r.ReviewVerdict)
		}
		for _, rv := range r.Reviews {
			if rv.Approver == caller.String() && rv.Approve == in.Approve {
				res.Counted, res.Note = false, fmt.Sprintf("%s already reviewed request %s this way; a review counts once", caller, id)
				if in.Revoke {
					res.Note += "; nothing revoked (revoke it with RevokeGrant)"
				}
				return errSkip
			}
		}
		now := is.now()
		r.Reviews = append(r.Reviews, Review{Approver: caller.String(), Approve: in.Approve, Comment: in.Comment, Time: now})
		prog, err := p.Evaluate(r.Rule, requester, policyReviews(r.Reviews))
		if err != nil {
			return fmt.Errorf("%w: request %s: %v", ErrState, id, err)
		}
		if r.State == StatePending {
			s.add(r, reviewPending(caller, r, prog, in))
		} else {
			is.reviewAfter(caller, r, prog, in, s, now)
		}
		if in.Revoke && (r.State == StateIssued || r.State == StateApproved) {
			r.State, r.EndedBy, r.EndReason, r.EndCause = StateRevoked, caller.String(), in.Comment, EndRevoked
			details := map[string]string{"review": "denied", "cause": EndRevoked}
			if in.Comment != "" {
				details["reason"] = in.Comment
			}
			if !r.NotAfter.IsZero() {
				details["not_after"] = r.NotAfter.Format(time.RFC3339)
			}
			s.add(r, record(caller, audit.ActionGrantRevoked, details))
			res.Revoked = true
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		is.metrics.reviews.WithLabelValues(verdictDuplicate).Inc()
		res.Request = r
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	verdict := verdictDeny
	if in.Approve {
		verdict = verdictApprove
	}
	is.metrics.reviews.WithLabelValues(verdict).Inc()
	res.Request = r
	if res.Revoked {
		is.metrics.revoked.Add(1)
		w := is.revs.add(Revocation{GrantID: r.ID, NotAfter: r.grantEnd()}, true)
		res.Following, res.Acknowledged = is.revs.wait(ctx, r.ID, w, in.AckWait)
	}
	if r.State == StateApproved {
		issued, err := is.issueIfDue(ctx, r)
		if err != nil {
			return nil, err
		}
		if issued != nil {
			res.Request = issued
		}
	}
	return res, nil
}

// check checks the review's own arguments.
func (in ReviewInput) check() error {
	if len(in.Comment) > MaxCommentLength {
		return fmt.Errorf("%w: comment: %d bytes, at most %d", ErrInvalid, len(in.Comment), MaxCommentLength)
	}
	if in.Revoke && in.Approve {
		return fmt.Errorf("%w: revoke: only a denial revokes", ErrInvalid)
	}
	if in.AckWait < 0 || in.AckWait > MaxAckWait {
		return fmt.Errorf("%w: ack_timeout: must be a duration in [0s, %s]", ErrInvalid, MaxAckWait)
	}
	return nil
}

// reviewPending applies the latest review of pending request r, whose
// tally is prog, and returns its audit record.
func reviewPending(caller spiffeid.ID, r *Request, prog policy.Progress, in ReviewInput) audit.Record {
	details := map[string]string{"approve": fmt.Sprint(in.Approve)}
	if in.Comment != "" {
		details["comment"] = in.Comment
	}
	action := audit.ActionRequestApproved
	switch {
	case prog.Denied:
		r.State, r.EndedBy, r.EndReason, r.Missing = StateDenied, caller.String(), in.Comment, nil
		action = audit.ActionRequestDenied
	case !in.Approve:
		// A denial that does not end the request (deny_ends_request:
		// false) is recorded and counted for nothing.
		action = audit.ActionRequestDenied
		r.Missing = factors(prog.Missing)
	case prog.Satisfied:
		r.State, r.Missing = StateApproved, nil
		details["outcome"] = "approved"
	default:
		r.Missing = factors(prog.Missing)
		details["outcome"] = "still pending: needs " + factorText(prog.Missing)
	}
	details["state"] = string(r.State)
	return record(caller, action, details)
}

// reviewAfter adds to s the steps of the latest review of break-glass grant
// r, whose tally is prog: the review itself and, when it concludes the
// review, the clearing of the flag.
func (is *Issuer) reviewAfter(caller spiffeid.ID, r *Request, prog policy.Progress, in ReviewInput, s *steps, now time.Time) {
	details := map[string]string{"approve": fmt.Sprint(in.Approve), "break_glass": "true", "state": string(r.State)}
	if in.Comment != "" {
		details["comment"] = in.Comment
	}
	action := audit.ActionRequestApproved
	if !in.Approve {
		action = audit.ActionRequestDenied
	}
	verdict := ""
	switch {
	case prog.Denied:
		verdict = VerdictDenied
	case prog.Satisfied:
		verdict = VerdictApproved
	default:
		r.Missing = factors(prog.Missing)
		details["outcome"] = "still needs review: needs " + factorText(prog.Missing)
	}
	if verdict == "" {
		s.add(r, record(caller, action, details))
		return
	}
	details["outcome"] = "review concluded: " + verdict
	s.add(r, record(caller, action, details))
	r.NeedsReview, r.ReviewVerdict, r.Missing = false, verdict, nil
	cleared := map[string]string{
		"verdict": verdict, "flagged_at": r.CreateTime.Format(time.RFC3339),
		"review_took": now.Sub(r.CreateTime).Round(time.Second).String(),
	}
	if verdict == VerdictDenied {
		cleared["denied_by"] = prog.DeniedBy.String()
	} else {
		ids := make([]string, 0, len(prog.Counted))
		for _, id := range prog.Counted {
			ids = append(ids, id.String())
		}
		cleared["approvers"] = strings.Join(ids, ",")
	}
	s.add(r, record(is.cfg.ID, audit.ActionGrantReviewed, cleared))
	is.cfg.Logger.Info("issuer: break-glass review concluded", "request", r.ID, "verdict", verdict)
}

// loadUnreviewed fills the gauges of break-glass grants awaiting review
// from the store at start.
func (is *Issuer) loadUnreviewed(ctx context.Context) error {
	before := ""
	for {
		page, next, err := is.cfg.Store.List(ctx, Query{NeedsReview: true, Before: before, Limit: MaxPageSize})
		if err != nil {
			return err
		}
		for _, r := range page {
			is.metrics.trackReview(r)
		}
		if next == "" {
			return nil
		}
		before = next
	}
}

func policyReviews(rs []Review) []policy.Review {
	out := make([]policy.Review, 0, len(rs))
	for _, r := range rs {
		id, err := spiffeid.FromString(r.Approver)
		if err != nil {
			continue
		}
		out = append(out, policy.Review{Approver: id, Approve: r.Approve})
	}
	return out
}

func factorText(fs []policy.Factor) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, " and ")
}

// Cancel ends caller's own request while it is pending, or approved but not
// yet started.
func (is *Issuer) Cancel(ctx context.Context, caller spiffeid.ID, id string) (*Request, error) {
	return is.change(ctx, id, func(r *Request) (audit.Record, error) {
		if r.Requester != caller.String() {
			return audit.Record{}, fmt.Errorf("%w: only the requester may cancel request %s", ErrPermission, id)
		}
		if r.State != StatePending && r.State != StateApproved {
			return audit.Record{}, fmt.Errorf("%w: request %s is %s; only a pending or not yet started request can be canceled", ErrState, id, r.State)
		}
		r.State, r.EndedBy, r.Missing = StateCanceled, caller.String(), nil
		return record(caller, audit.ActionRequestCanceled, nil), nil
	})
}

// RevokeResult is the outcome of Revoke.
type RevokeResult struct {
	Request *Request
	// Following is how many verifier streams were following revocations,
	// Acknowledged how many of them confirmed this one within the wait.
	Following, Acknowledged int
}

// MaxAckWait bounds how long Revoke waits for acknowledgements.
const MaxAckWait = 10 * time.Second

// Revoke ends an approved or issued grant early. The holder, an approver
// eligible for the grant's rule, or a caller with the revoke_any permission
// may revoke it; the other arguments are checked after that permission. It
// then waits up to ackWait for the verifiers following revocations to
// acknowledge it.
func (is *Issuer) Revoke(ctx context.Context, caller spiffeid.ID, id, reason string, ackWait time.Duration) (*RevokeResult, error) {
	p, err := is.policy()
	if err != nil {
		return nil, err
	}
	r, err := is.change(ctx, id, func(r *Request) (audit.Record, error) {
		if !involved(p, caller, r, policy.RevokeAny) {
			return audit.Record{}, fmt.Errorf("%w: revoking request %s needs the %s permission, or to be its holder or an approver of rule %q", ErrPermission, id, policy.RevokeAny, r.Rule)
		}
		if len(reason) > MaxCommentLength {
			return audit.Record{}, fmt.Errorf("%w: reason: %d bytes, at most %d", ErrInvalid, len(reason), MaxCommentLength)
		}
		if ackWait < 0 || ackWait > MaxAckWait {
			return audit.Record{}, fmt.Errorf("%w: ack_timeout: must be a duration in [0s, %s]", ErrInvalid, MaxAckWait)
		}
		if r.State != StateIssued && r.State != StateApproved {
			return audit.Record{}, fmt.Errorf("%w: request %s is %s; only an approved or issued grant can be revoked", ErrState, id, r.State)
		}
		r.State, r.EndedBy, r.EndReason, r.EndCause = StateRevoked, caller.String(), reason, EndRevoked
		details := map[string]string{"cause": EndRevoked}
		if reason != "" {
			details["reason"] = reason
		}
		if !r.NotAfter.IsZero() {
			details["not_after"] = r.NotAfter.Format("2006-01-02T15:04:05Z07:00")
		}
		return record(caller, audit.ActionGrantRevoked, details), nil
	})
	if err != nil {
		return nil, err
	}
	is.metrics.revoked.Add(1)
	w := is.revs.add(Revocation{GrantID: r.ID, NotAfter: r.grantEnd()}, true)
	res := &RevokeResult{Request: r}
	res.Following, res.Acknowledged = is.revs.wait(ctx, r.ID, w, ackWait)
	return res, nil
}
