package issuer

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
)

// State is where a request is in its life.
//
//	PENDING -> APPROVED -> ISSUED -> EXPIRED | REVOKED
//	PENDING -> DENIED | CANCELED | TIMED_OUT
//
// APPROVED is the wait between approval and a scheduled start; an approved
// request whose start has come is issued at once.
type State string

// The states of a request.
const (
	StatePending  State = "PENDING"
	StateApproved State = "APPROVED"
	StateIssued   State = "ISSUED"
	StateExpired  State = "EXPIRED"
	StateRevoked  State = "REVOKED"
	StateDenied   State = "DENIED"
	StateCanceled State = "CANCELED"
	StateTimedOut State = "TIMED_OUT"
)

// States returns every state, in lifecycle order.
func States() []State {
	return []State{StatePending, StateApproved, StateIssued, StateExpired, StateRevoked, StateDenied, StateCanceled, StateTimedOut}
}

// Final reports whether nothing more can happen to a request in s.
func (s State) Final() bool {
	switch s {
	case StateExpired, StateRevoked, StateDenied, StateCanceled, StateTimedOut:
		return true
	}
	return false
}

// Causes of a grant's end: Request.EndCause, and the "cause" detail of the
// audit entry (grant.expired or grant.revoked) that ends it.
const (
	// EndExpired: the grant reached its end.
	EndExpired = "expired"
	// EndRevoked: someone revoked the grant (or the approved request).
	EndRevoked = "revoked"
	// EndUseLimit: verifiers reported the last use its use limit allows.
	EndUseLimit = "use_limit"
	// EndUnissuable: the request was approved but could not be issued (its
	// end passed first, or its certificate could not be minted). It ends
	// EXPIRED when its end has passed, REVOKED by the issuer otherwise.
	EndUnissuable = "unissuable"
)

// Review is one approver's word on a request.
type Review struct {
	Approver string    `json:"approver"`
	Approve  bool      `json:"approve"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
}

// Factor is one condition of approval: Count distinct approvers from any of
// Groups.
type Factor struct {
	Count  int      `json:"count"`
	Groups []string `json:"groups"`
}

// Request is an access request and, once issued, its grant. Its ID is also
// the grant's ID. The store keeps it as JSON; Version increases with every
// change and guards concurrent writers.
type Request struct {
	ID             string        `json:"id"`
	Requester      string        `json:"requester"`
	State          State         `json:"state"`
	Scopes         []grant.Scope `json:"scopes"`
	TTL            time.Duration `json:"ttl"`
	Reason         string        `json:"reason,omitempty"`
	UseLimit       uint32        `json:"use_limit,omitempty"`
	Uses           uint32        `json:"uses,omitempty"`
	BreakGlass     bool          `json:"break_glass,omitempty"`
	NeedsReview    bool          `json:"needs_review,omitempty"`
	ReviewVerdict  string        `json:"review_verdict,omitempty"` // VerdictApproved or VerdictDenied once a break-glass review concludes
	Rule           string        `json:"rule"`
	Factors        []Factor      `json:"factors,omitempty"`
	Missing        []Factor      `json:"missing,omitempty"`
	Reviews        []Review      `json:"reviews,omitempty"`
	CreateTime     time.Time     `json:"create_time"`
	UpdateTime     time.Time     `json:"update_time"`
	ReviewDeadline time.Time     `json:"review_deadline"`
	StartTime      time.Time     `json:"start_time,omitzero"`
	NotAfter       time.Time     `json:"not_after,omitzero"`
	Serial         string        `json:"serial,omitempty"`
	PublicKey      []byte        `json:"public_key,omitempty"` // PKIX DER, from the request's CSR
	CertChain      [][]byte      `json:"cert_chain,omitempty"`
	EndedBy        string        `json:"ended_by,omitempty"`
	EndReason      string        `json:"end_reason,omitempty"`
	EndCause       string        `json:"end_cause,omitempty"` // why a grant ended: one of the End* causes
	Version        uint64        `json:"version"`
	// ExpiringAt is when the expiring notice of the grant's current end is
	// due (Config.ExpiringLead before NotAfter); zero when none is (notices
	// off, or a grant that lasts no longer than the lead time).
	ExpiringAt time.Time `json:"expiring_at,omitzero"`
	// ExpiringNotified is the end (NotAfter) for which the expiring notice
	// was sent: equal to NotAfter once it was, so that it goes once per
	// grant per end, across restarts.
	ExpiringNotified time.Time `json:"expiring_notified,omitzero"`
	// Extensions are the requests to push the grant's end later, in
	// order; the last may be pending (see Issuer.Extend).
	Extensions []Extension `json:"extensions,omitempty"`
}

// clone returns a deep enough copy of r for a state change: slices that a
// change appends to or replaces are copied.
func (r *Request) clone() *Request {
	c := *r
	c.Reviews = append([]Review(nil), r.Reviews...)
	c.Missing = append([]Factor(nil), r.Missing...)
	c.Extensions = append([]Extension(nil), r.Extensions...)
	return &c
}

// Due returns the time of r's next deadline, when the sweeper must look at
// it: the review deadline of a pending request, the start of an approved
// one, the end of an issued grant (or, before it, the time its expiring
// notice is due, until it is sent). A request in a final state has none.
func (r *Request) Due() (time.Time, bool) {
	switch r.State {
	case StatePending:
		return r.ReviewDeadline, true
	case StateApproved:
		if r.StartTime.IsZero() {
			return r.UpdateTime, true
		}
		return r.StartTime, true
	case StateIssued:
		if r.expiringPending() {
			return r.ExpiringAt, true
		}
		return r.NotAfter, true
	}
	return time.Time{}, false
}

// newID returns a new request ID: "r" and 26 characters of base32 (lower
// case, no padding) over 48 bits of milliseconds since the Unix epoch and 80
// random bits, so that IDs sort by creation time and are valid grant IDs.
func newID(now time.Time) (string, error) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("issuer: request ID: %w", err)
	}
	return "r" + idEncoding.EncodeToString(b[:]), nil
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)
