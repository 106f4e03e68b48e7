package inputs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// call POSTs the signed JSON of req to ep and decodes its signed answer
// into out. The errors never quote the URL (it may hold a token) nor the
// answer's body.
func (s *Source) call(ctx context.Context, ep *endpoint, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ep.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("building the request failed")
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(notify.HeaderSignature, notify.Sign(ep.secret, body, s.clock()))
	resp, err := s.client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("did not answer within %s", ep.timeout)
		}
		return &unreachable{unwrapURL(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %s", resp.Status)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return &unreachable{unwrapURL(err)}
	}
	if len(answer) > maxAnswer {
		return fmt.Errorf("answer larger than %d bytes", maxAnswer)
	}
	sig := resp.Header.Get(notify.HeaderSignature)
	if sig == "" {
		return fmt.Errorf("answer refused: not signed (no %s header)", notify.HeaderSignature)
	}
	if err := notify.Verify(ep.secret, answer, sig, s.clock(), 0); err != nil {
		return fmt.Errorf("answer refused: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(answer))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("answer is not the expected JSON: %v", err)
	}
	if dec.More() {
		return errors.New("answer has data after its JSON object")
	}
	return nil
}

// unreachable is a failed connection: the policy (and so the requester)
// is told that much, the log gets the detail.
type unreachable struct{ err error }

func (u *unreachable) Error() string { return "could not be reached" }
func (u *unreachable) Unwrap() error { return u.err }

// unwrapURL drops the *url.Error wrapper, whose message quotes the URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

type ticketRequest struct {
	Ticket    string `json:"ticket"`
	Requester string `json:"requester"`
	Rule      string `json:"rule"`
}

type ticketAnswer struct {
	Ticket   *string `json:"ticket"`
	Exists   *bool   `json:"exists"`
	Open     *bool   `json:"open"`
	Assignee string  `json:"assignee"`
}

func (s *Source) ticket(ctx context.Context, requester spiffeid.ID, need policy.Needs) *policy.Ticket {
	name, id := need.TicketChecker, need.TicketID
	ep := s.checkers[name]
	if ep == nil {
		return &policy.Ticket{ID: id, Err: s.failed("ticket", name, "", need.Rule, requester,
			fmt.Errorf("no ticket checker named %q is configured (ticket_checkers in jitd.yaml)", name))}
	}
	if v, ok := ep.cache.get(id, s.clock()); ok {
		s.count("ticket", name, "cached")
		t := v.(policy.Ticket)
		return &t
	}
	var a ticketAnswer
	err := s.call(ctx, ep, ticketRequest{Ticket: id, Requester: requester.String(), Rule: need.Rule}, &a)
	if err == nil {
		switch {
		case a.Ticket == nil || a.Exists == nil || a.Open == nil:
			err = errors.New("answer lacks ticket, exists or open")
		case *a.Ticket != id:
			err = fmt.Errorf("answer is about ticket %q, not %q", *a.Ticket, id)
		case len(a.Assignee) > 256:
			err = errors.New("assignee longer than 256 bytes")
		}
	}
	if err != nil {
		return &policy.Ticket{ID: id, Err: s.failed("ticket", name, ep.safe, need.Rule, requester, err)}
	}
	s.count("ticket", name, "ok")
	t := policy.Ticket{ID: id, Exists: *a.Exists, Open: *a.Open && *a.Exists, Assignee: a.Assignee}
	ep.cache.put(id, t, s.clock())
	return &t
}

type onCallRequest struct {
	Requester string `json:"requester"`
}

type onCallAnswer struct {
	Requester *string  `json:"requester"`
	OnCall    *bool    `json:"on_call"`
	Schedules []string `json:"schedules"`
}

func (s *Source) onCall(ctx context.Context, requester spiffeid.ID) *policy.OnCall {
	switch {
	case s.rota != nil:
		s.count("oncall", "file", "ok")
		now, scheds := s.rota.onCall(requester.String(), s.clock())
		return &policy.OnCall{Now: now, Schedules: scheds}
	case s.oncall == nil:
		return &policy.OnCall{Err: s.failed("oncall", "none", "", "", requester, errors.New("no on-call source is configured (oncall in jitd.yaml)"))}
	}
	ep, who := s.oncall, requester.String()
	if v, ok := ep.cache.get(who, s.clock()); ok {
		s.count("oncall", "http", "cached")
		o := v.(policy.OnCall)
		return &o
	}
	var a onCallAnswer
	err := s.call(ctx, ep, onCallRequest{Requester: who}, &a)
	if err == nil {
		switch {
		case a.Requester == nil || a.OnCall == nil:
			err = errors.New("answer lacks requester or on_call")
		case *a.Requester != who:
			err = fmt.Errorf("answer is about %q, not %q", *a.Requester, who)
		case len(a.Schedules) > 64:
			err = errors.New("more than 64 schedules")
		}
	}
	if err != nil {
		return &policy.OnCall{Err: s.failed("oncall", "http", ep.safe, "", requester, err)}
	}
	s.count("oncall", "http", "ok")
	o := policy.OnCall{Now: *a.OnCall, Schedules: a.Schedules}
	if !o.Now {
		o.Schedules = nil
	}
	ep.cache.put(who, o, s.clock())
	return &o
}
