package policy

import "fmt"

// Ticket is the answer of a ticket checker about the ticket a request's
// reason names, fetched by the issuer before [Policy.Decide] (see
// [Policy.Needs]). It is the `ticket` of auto_approve conditions.
type Ticket struct {
	// ID is the ticket the checker was asked about; it must equal the one
	// the rule's reason pattern extracts.
	ID string
	// Exists and Open are the checker's answer: a ticket that does not
	// exist or is not open denies the request.
	Exists, Open bool
	// Assignee is the ticket's assignee, if the checker says ("" if not).
	Assignee string
	// Err, when not empty, says why the check failed (checker down, timed
	// out, answered garbage or with a bad signature): the rule's on_error
	// decides.
	Err string
}

// OnCall is the requester's on-call status, fetched by the issuer before
// [Policy.Decide] when the matching rule's condition reads `oncall`.
type OnCall struct {
	// Now is whether the requester is on call at the request's time.
	Now bool
	// Schedules are the schedules the requester is on call for now.
	Schedules []string
	// Err, when not empty, says why the status is unknown: the rule's
	// on_error decides.
	Err string
}

// Needs is what the rule matching a request needs fetched before
// [Policy.Decide] can decide it.
type Needs struct {
	// Rule is the matching rule, "" when none matches (nothing is needed).
	Rule string
	// TicketChecker names the checker to ask about TicketID; "" for none.
	TicketChecker string
	// TicketID is the ticket the reason names, extracted with the rule's
	// reason pattern; "" when the reason names none (Decide then denies).
	TicketID string
	// OnCall says the rule's condition reads `oncall`.
	OnCall bool
}

// The values of a rule's on_error.
const (
	onErrorDeny          = "deny"
	onErrorNeedsApproval = "needs_approval"
)

// Needs returns what the rule matching req needs fetched (a ticket check,
// the requester's on-call status) before Decide. The issuer fetches it and
// sets req.Ticket and req.OnCall, so that Decide stays a pure function of
// its input.
func (p *Policy) Needs(req Request) Needs {
	if p == nil || validateRequest(&req) != "" {
		return Needs{}
	}
	r, _ := p.match(&req)
	if r == nil {
		return Needs{}
	}
	n := Needs{Rule: r.name, TicketChecker: r.ticketCheck, OnCall: r.usesOnCall}
	if r.ticketCheck != "" {
		n.TicketID = r.ticketID(req.Reason)
	}
	return n
}

// ticketID extracts the ticket ID from reason with the rule's reason
// pattern: its group named "ticket", else its first group. "" when the
// pattern does not match.
func (r *rule) ticketID(reason string) string {
	if r.reasonRE == nil {
		return ""
	}
	m := r.reasonRE.FindStringSubmatch(reason)
	if m == nil {
		return ""
	}
	if i := r.reasonRE.SubexpIndex("ticket"); i > 0 {
		return m[i]
	}
	if len(m) > 1 {
		return m[1]
	}
	return ""
}

// checkInputs applies the rule's ticket check and on-call input to req. It
// returns a denial reason, or, when an input is missing or failed, why
// (failed), for on_error to decide.
func (r *rule) checkInputs(req *Request) (deny, failed string) {
	if r.ticketCheck != "" {
		id, t := r.ticketID(req.Reason), req.Ticket
		switch {
		case id == "":
			return fmt.Sprintf("denied: reason names no ticket (pattern %q) for ticket check %q", r.reasonRE.String(), r.ticketCheck), ""
		case t == nil:
			failed = fmt.Sprintf("ticket %s was not checked (ticket check %q)", id, r.ticketCheck)
		case t.Err != "":
			failed = fmt.Sprintf("ticket check %q of %s failed: %s", r.ticketCheck, id, t.Err)
		case t.ID != id:
			failed = fmt.Sprintf("ticket check %q answered about %q, not %q", r.ticketCheck, t.ID, id)
		case !t.Exists:
			return fmt.Sprintf("denied: ticket %s does not exist (ticket check %q)", id, r.ticketCheck), ""
		case !t.Open:
			return fmt.Sprintf("denied: ticket %s is not open (ticket check %q)", id, r.ticketCheck), ""
		}
		if failed != "" {
			return "", failed
		}
	}
	if r.usesOnCall {
		switch {
		case req.OnCall == nil:
			return "", "on-call status unknown: no on-call source answered"
		case req.OnCall.Err != "":
			return "", "on-call status unknown: " + req.OnCall.Err
		}
	}
	return "", ""
}

// ticketLine says what a passed ticket check found, for the reasons.
func (r *rule) ticketLine(req *Request) string {
	t := req.Ticket
	s := fmt.Sprintf("ticket %s is open (ticket check %q)", t.ID, r.ticketCheck)
	if t.Assignee != "" {
		s += ", assignee " + t.Assignee
	}
	return s
}
