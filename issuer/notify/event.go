package notify

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
)

// Kind is what an event announces; endpoints subscribe to kinds by name.
type Kind string

// The kinds of event.
const (
	// KindCreated: a request was made (pending review, or auto-approved).
	KindCreated Kind = "created"
	// KindDecided: a request was approved, denied, canceled or timed out.
	KindDecided Kind = "decided"
	// KindIssued: a grant was issued (break_glass is set for a break-glass
	// grant).
	KindIssued Kind = "issued"
	// KindRevoked: a grant was revoked: by someone, on reaching its use
	// limit, or by the issuer when it could not be issued (see Cause).
	KindRevoked Kind = "revoked"
	// KindExpiring: a grant's end is near (the issuer's expiring lead time
	// away, 5 minutes by default; NotAfter says when): sent once per grant
	// per end, never for a grant that ended first.
	KindExpiring Kind = "expiring"
	// KindExpired: a grant reached its end, or its end passed before it
	// could be issued (see Cause).
	KindExpired Kind = "expired"
	// KindBreakGlass: a break-glass request was made; its grant is issued
	// at once and reviewed afterwards.
	KindBreakGlass Kind = "break_glass"
	// KindReviewed: the after-the-fact review of a break-glass grant
	// concluded (verdict approved or denied) and its flag cleared.
	KindReviewed Kind = "reviewed"
	// KindExtensionRequested: the holder asked to push an issued grant's
	// end later (Extension says by how much); it awaits review unless an
	// extended event follows at once.
	KindExtensionRequested Kind = "extension_requested"
	// KindExtended: an extension was approved; NotAfter is the new end.
	KindExtended Kind = "extended"
	// KindExtensionDenied: an approver denied an extension; the grant ends
	// as before (NotAfter).
	KindExtensionDenied Kind = "extension_denied"
)

var kinds = []Kind{KindCreated, KindDecided, KindIssued, KindRevoked, KindExpiring, KindExpired, KindBreakGlass, KindReviewed, KindExtensionRequested, KindExtended, KindExtensionDenied}

// Kinds returns every kind, in lifecycle order.
func Kinds() []Kind { return slices.Clone(kinds) }

// Event is what a webhook receives, as the JSON body of a POST.
type Event struct {
	// ID is unique per event and the same across retries and endpoints
	// (also sent as X-Jitgrant-Delivery), so that receivers can drop
	// duplicates.
	ID string `json:"id"`
	// Kind is what happened.
	Kind Kind `json:"kind"`
	// Time is when the change was committed.
	Time time.Time `json:"time"`
	// RequestID is the request's ID, which is also its grant's ID.
	RequestID string `json:"request_id"`
	// Requester is the requester's SPIFFE ID.
	Requester string `json:"requester"`
	// State is the request's state after the change (PENDING, APPROVED...).
	State string `json:"state"`
	// Reason is the requester's reason.
	Reason string `json:"reason,omitempty"`
	// Scopes are the requested scopes, "/pkg.Service/Method" for any
	// resource or "/pkg.Service/Method@resource" once per resource.
	Scopes []string `json:"scopes"`
	// Approvers are the SPIFFE IDs of those who approved the request.
	Approvers []string `json:"approvers,omitempty"`
	// NotAfter is when the grant ends (issued grants).
	NotAfter time.Time `json:"not_after,omitzero"`
	// BreakGlass is set for a break-glass request or grant.
	BreakGlass bool `json:"break_glass"`
	// EndedBy is who denied, canceled or revoked the request (in a
	// reviewed event with verdict denied: who denied the break-glass grant).
	EndedBy string `json:"ended_by,omitempty"`
	// EndReason is the denial comment or revocation reason.
	EndReason string `json:"end_reason,omitempty"`
	// Verdict is how a break-glass grant's review concluded (reviewed
	// events): approved or denied.
	Verdict string `json:"verdict,omitempty"`
	// Cause is why a grant ended, in revoked and expired events: expired,
	// revoked, use_limit or unissuable (the issuer.End* causes).
	Cause string `json:"cause,omitempty"`
	// Text is a one-line summary in Slack mrkdwn, so that a Slack (or
	// compatible) incoming webhook URL can be an endpoint as is.
	Text string `json:"text"`
}

// FromChange maps a committed request change, as issuer.Config.OnChange
// reports it, to the event to deliver, if any:
//
//	request.created                    created
//	request.break_glass                break_glass
//	request.approved, request.denied   decided, once the request is APPROVED
//	                                   or DENIED (a review that leaves it
//	                                   PENDING is no decision; a review of a
//	                                   break-glass grant after the fact
//	                                   neither)
//	grant.reviewed                     reviewed (the break-glass review
//	                                   concluded; Verdict says how)
//	request.canceled, request.timed_out decided
//	grant.issued                       issued (BreakGlass set for break-glass)
//	grant.revoked                      revoked
//	grant.expiring                     expiring (NotAfter: the end it is for)
//	grant.expired                      expired
//	grant.extension_requested          extension_requested
//	grant.extended                     extended (NotAfter: the new end)
//	grant.extension_denied             extension_denied
//
// Anything else gives no event. A break-glass request thus gives
// break_glass when it is made and issued (with BreakGlass) when its grant is,
// never both for one change. The event's Time is r.UpdateTime; its ID is new
// and random.
func FromChange(r *issuer.Request, action audit.Action) (Event, bool) {
	var kind Kind
	switch action {
	case audit.ActionRequestCreated:
		kind = KindCreated
	case audit.ActionBreakGlass:
		kind = KindBreakGlass
	case audit.ActionRequestApproved, audit.ActionRequestDenied:
		if r.State == issuer.StatePending || r.BreakGlass {
			return Event{}, false
		}
		kind = KindDecided
	case audit.ActionRequestCanceled, audit.ActionRequestTimedOut:
		kind = KindDecided
	case audit.ActionGrantIssued:
		kind = KindIssued
	case audit.ActionGrantRevoked:
		kind = KindRevoked
	case audit.ActionGrantReviewed:
		kind = KindReviewed
	case audit.ActionGrantExpiring:
		kind = KindExpiring
	case audit.ActionGrantExpired:
		kind = KindExpired
	case audit.ActionGrantExtensionRequested:
		kind = KindExtensionRequested
	case audit.ActionGrantExtended:
		kind = KindExtended
	case audit.ActionGrantExtensionDenied:
		kind = KindExtensionDenied
	default:
		return Event{}, false
	}
	ev := Event{
		ID: newEventID(), Kind: kind, Time: r.UpdateTime, RequestID: r.ID, Requester: r.Requester,
		State: string(r.State), Reason: r.Reason, Scopes: scopeStrings(r.Scopes), Approvers: approvers(r.Reviews),
		NotAfter: r.NotAfter, BreakGlass: r.BreakGlass, EndedBy: r.EndedBy, EndReason: r.EndReason,
		Verdict: r.ReviewVerdict,
	}
	if kind == KindReviewed && r.ReviewVerdict == issuer.VerdictDenied && len(r.Reviews) > 0 {
		// The denial that concluded the review is the latest review.
		last := r.Reviews[len(r.Reviews)-1]
		ev.EndedBy, ev.EndReason = last.Approver, last.Comment
	}
	if kind == KindRevoked || kind == KindExpired {
		ev.Cause = r.EndCause
	}
	ev.Text = ev.summary()
	return ev, true
}

// newEventID returns 128 random bits as 26 characters of base32.
func newEventID() string { return rand.Text() }

func scopeStrings(scopes []grant.Scope) []string {
	out := []string{}
	for _, s := range scopes {
		if len(s.Resources) == 0 {
			out = append(out, s.Method)
			continue
		}
		for _, res := range s.Resources {
			out = append(out, s.Method+"@"+res)
		}
	}
	return out
}

// approvers returns the distinct approvers among reviews, in order.
func approvers(reviews []issuer.Review) []string {
	var out []string
	for _, rv := range reviews {
		if rv.Approve && !slices.Contains(out, rv.Approver) {
			out = append(out, rv.Approver)
		}
	}
	return out
}

// summary renders ev as one line of Slack mrkdwn; every value from a request
// is escaped so that a reason cannot mention @channel or forge a link.
func (ev *Event) summary() string {
	id, who, scopes := esc(ev.RequestID), esc(ev.Requester), esc(strings.Join(ev.Scopes, " "))
	var s string
	switch ev.Kind {
	case KindCreated:
		s = fmt.Sprintf(":inbox_tray: request %s by %s for %s", id, who, scopes)
		if ev.State == string(issuer.StatePending) {
			s += " awaits review"
		}
	case KindBreakGlass:
		s = fmt.Sprintf(":rotating_light: break-glass request %s by %s for %s", id, who, scopes)
	case KindDecided:
		switch issuer.State(ev.State) {
		case issuer.StateApproved, issuer.StateIssued:
			s = fmt.Sprintf(":white_check_mark: request %s by %s approved by %s", id, who, esc(strings.Join(ev.Approvers, ", ")))
		case issuer.StateDenied:
			s = fmt.Sprintf(":x: request %s by %s denied by %s", id, who, esc(ev.EndedBy))
		case issuer.StateCanceled:
			s = fmt.Sprintf(":heavy_minus_sign: request %s by %s canceled by %s", id, who, esc(ev.EndedBy))
		case issuer.StateTimedOut:
			s = fmt.Sprintf(":hourglass: request %s by %s timed out awaiting review", id, who)
		default:
			s = fmt.Sprintf("request %s by %s is %s", id, who, esc(ev.State))
		}
	case KindIssued:
		prefix := ":key: grant"
		if ev.BreakGlass {
			prefix = ":rotating_light: break-glass grant"
		}
		s = fmt.Sprintf("%s %s issued to %s for %s", prefix, id, who, scopes)
		if !ev.NotAfter.IsZero() {
			s += " until " + ev.NotAfter.UTC().Format(time.RFC3339)
		}
	case KindRevoked:
		s = fmt.Sprintf(":no_entry_sign: grant %s of %s revoked by %s", id, who, esc(ev.EndedBy))
	case KindExpiring:
		s = fmt.Sprintf(":hourglass_flowing_sand: grant %s of %s for %s expires at %s", id, who, scopes, ev.NotAfter.UTC().Format(time.RFC3339))
	case KindExpired:
		s = fmt.Sprintf(":stopwatch: grant %s of %s expired", id, who)
	case KindExtensionRequested:
		s = fmt.Sprintf(":hourglass: grant %s of %s: extension asked", id, who)
	case KindExtended:
		s = fmt.Sprintf(":arrow_forward: grant %s of %s extended until %s", id, who, ev.NotAfter.UTC().Format(time.RFC3339))
	case KindExtensionDenied:
		s = fmt.Sprintf(":x: grant %s of %s: extension denied; it ends at %s", id, who, ev.NotAfter.UTC().Format(time.RFC3339))
	case KindReviewed:
		if ev.Verdict == issuer.VerdictApproved {
			s = fmt.Sprintf(":white_check_mark: break-glass grant %s of %s reviewed: approved by %s", id, who, esc(strings.Join(ev.Approvers, ", ")))
		} else {
			s = fmt.Sprintf(":x: break-glass grant %s of %s reviewed: %s by %s", id, who, esc(ev.Verdict), esc(ev.EndedBy))
		}
	default:
		s = fmt.Sprintf("jitgrant %s: request %s by %s", esc(string(ev.Kind)), id, who)
	}
	switch {
	case ev.EndReason != "" && (ev.Kind == KindDecided || ev.Kind == KindRevoked || ev.Kind == KindExpired || ev.Kind == KindReviewed):
		s += " — " + esc(ev.EndReason)
	case ev.Reason != "" && (ev.Kind == KindCreated || ev.Kind == KindBreakGlass || ev.Kind == KindIssued):
		s += " — reason: " + esc(ev.Reason)
	}
	return s
}

// esc escapes the three characters Slack mrkdwn gives meaning to (links,
// mentions) and flattens tabs and newlines, keeping the text to one line.
func esc(s string) string { return escaper.Replace(s) }

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\n", " ", "\r", " ", "\t", " ")
