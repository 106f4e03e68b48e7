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

// ReviewResult is the outcome of a review.
type ReviewResult struct {
	Request *Request
	// Counted is false when the review changed nothing (the same approver
	// approving twice); Note says why.
	Counted bool
	Note    string
}

// Review records caller's approval (approve) or denial of a pending request.
// The requester cannot review their own request; a caller outside the
// rule's approver groups is refused; an approver counts once. When the
// approvals satisfy every factor the request is approved, and issued at
// once unless it is scheduled later; an eligible denial ends it.
func (is *Issuer) Review(ctx context.Context, caller spiffeid.ID, id string, approve bool, comment string) (*ReviewResult, error) {
	p, err := is.policy()
	if err != nil {
		return nil, err
	}
	res := &ReviewResult{Counted: true}
	r, err := is.change(ctx, id, func(r *Request) (audit.Record, error) {
		requester, err := spiffeid.FromString(r.Requester)
		if err != nil {
			return audit.Record{}, fmt.Errorf("issuer: request %s: requester: %w", id, err)
		}
		if ok, why := p.EligibleApprover(r.Rule, requester, caller); !ok {
			is.metrics.reviewsRefused.Add(1)
			is.metrics.reviews.WithLabelValues(verdictRefused).Inc()
			return audit.Record{}, fmt.Errorf("%w: %s may not review request %s: %s", ErrPermission, caller, id, why)
		}
		if len(comment) > MaxCommentLength {
			return audit.Record{}, fmt.Errorf("%w: comment: %d bytes, at most %d", ErrInvalid, len(comment), MaxCommentLength)
		}
		if r.State != StatePending {
			return audit.Record{}, fmt.Errorf("%w: request %s is %s, not PENDING", ErrState, id, r.State)
		}
		for _, rv := range r.Reviews {
			if rv.Approver == caller.String() && rv.Approve == approve {
				res.Counted, res.Note = false, fmt.Sprintf("%s already reviewed request %s this way; a review counts once", caller, id)
				return audit.Record{}, errSkip
			}
		}
		now := is.now()
		r.Reviews = append(r.Reviews, Review{Approver: caller.String(), Approve: approve, Comment: comment, Time: now})
		prog, err := p.Evaluate(r.Rule, requester, policyReviews(r.Reviews))
		if err != nil {
			return audit.Record{}, fmt.Errorf("%w: request %s: %v", ErrState, id, err)
		}
		details := map[string]string{"approve": fmt.Sprint(approve)}
		if comment != "" {
			details["comment"] = comment
		}
		action := audit.ActionRequestApproved
		switch {
		case prog.Denied:
			r.State, r.EndedBy, r.EndReason, r.Missing = StateDenied, caller.String(), comment, nil
			action = audit.ActionRequestDenied
		case !approve:
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
		return record(caller, action, details), nil
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
	if approve {
		verdict = verdictApprove
	}
	is.metrics.reviews.WithLabelValues(verdict).Inc()
	res.Request = r
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
