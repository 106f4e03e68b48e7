package issuer

import (
	"context"
	"fmt"
	"slices"

	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Page sizes of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ListInput selects requests for List and Watch.
type ListInput struct {
	States           []State
	Requester        string // a SPIFFE ID
	AwaitingMyReview bool
	PageSize         int
	PageToken        string
	// NeedsReview keeps break-glass grants whose after-the-fact review is
	// outstanding.
	NeedsReview bool
}

// involved reports whether caller is r's requester, holds perm, or is an
// approver eligible for r's rule: who may see a request (list_all) and who
// may revoke its grant (revoke_any).
func involved(p *policy.Policy, caller spiffeid.ID, r *Request, perm policy.Permission) bool {
	return r.Requester == caller.String() || p.Allowed(perm, caller) || eligible(p, caller, r)
}

// eligible reports whether caller may review r under its rule.
func eligible(p *policy.Policy, caller spiffeid.ID, r *Request) bool {
	requester, err := spiffeid.FromString(r.Requester)
	if err != nil {
		return false
	}
	ok, _ := p.EligibleApprover(r.Rule, requester, caller)
	return ok
}

// visible reports whether caller may see r.
func visible(p *policy.Policy, caller spiffeid.ID, r *Request) bool {
	return involved(p, caller, r, policy.ListAll)
}

// awaiting reports whether r waits for caller's review: a pending request,
// a break-glass grant that needs review (in any state), or an issued
// grant's pending extension, that caller may review and has not yet
// reviewed.
func awaiting(p *policy.Policy, caller spiffeid.ID, r *Request) bool {
	if x := r.pendingExtension(); x != nil && r.State == StateIssued && !r.NeedsReview {
		if slices.ContainsFunc(x.Reviews, func(rv Review) bool { return rv.Approver == caller.String() }) {
			return false
		}
		requester, err := spiffeid.FromString(r.Requester)
		if err != nil {
			return false
		}
		ok, _ := p.EligibleExtensionApprover(r.Rule, requester, caller)
		return ok
	}
	if r.State != StatePending && !(r.BreakGlass && r.NeedsReview) {
		return false
	}
	if slices.ContainsFunc(r.Reviews, func(rv Review) bool { return rv.Approver == caller.String() }) {
		return false
	}
	return eligible(p, caller, r)
}

// Get returns one request that caller may see.
func (is *Issuer) Get(ctx context.Context, caller spiffeid.ID, id string) (*Request, error) {
	p, err := is.policy()
	if err != nil {
		return nil, err
	}
	r, err := is.cfg.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !visible(p, caller, r) {
		return nil, fmt.Errorf("%w: seeing request %s needs the %s permission, or to be its requester or an approver of its rule", ErrPermission, id, policy.ListAll)
	}
	return r, nil
}

// filter returns the predicate of in for caller.
func (in *ListInput) filter(p *policy.Policy, caller spiffeid.ID) func(*Request) bool {
	return func(r *Request) bool {
		if !visible(p, caller, r) {
			return false
		}
		return !in.AwaitingMyReview || awaiting(p, caller, r)
	}
}

func (in *ListInput) validate() error {
	for _, s := range in.States {
		if !slices.Contains(States(), s) {
			return fmt.Errorf("%w: states: unknown state %q", ErrInvalid, s)
		}
	}
	if in.Requester != "" {
		if _, err := spiffeid.FromString(in.Requester); err != nil {
			return fmt.Errorf("%w: requester: %v", ErrInvalid, err)
		}
	}
	if in.PageSize < 0 || in.PageSize > MaxPageSize {
		return fmt.Errorf("%w: page_size: %d not in [0, %d]", ErrInvalid, in.PageSize, MaxPageSize)
	}
	if in.PageToken != "" && !validID(in.PageToken) {
		return fmt.Errorf("%w: page_token: malformed", ErrInvalid)
	}
	return nil
}

// List returns a page of the requests caller may see, newest first.
func (is *Issuer) List(ctx context.Context, caller spiffeid.ID, in ListInput) ([]*Request, string, error) {
	if err := in.validate(); err != nil {
		return nil, "", err
	}
	p, err := is.policy()
	if err != nil {
		return nil, "", err
	}
	size := in.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	return is.cfg.Store.List(ctx, Query{
		States: in.States, Requester: in.Requester, NeedsReview: in.NeedsReview, Match: in.filter(p, caller),
		Before: in.PageToken, Limit: size,
	})
}

// Watch calls send with every current request caller may see that matches
// in, oldest first, then with each change of one, until ctx ends or send
// fails. A watcher too slow to keep up is dropped with an error.
func (is *Issuer) Watch(ctx context.Context, caller spiffeid.ID, in ListInput, send func(*Request) error) error {
	if err := in.validate(); err != nil {
		return err
	}
	sub := is.hub.subscribe()
	defer is.hub.unsubscribe(sub)
	match := func(r *Request) bool {
		p, err := is.policy()
		if err != nil {
			return false
		}
		q := Query{States: in.States, Requester: in.Requester, NeedsReview: in.NeedsReview, Match: in.filter(p, caller)}
		return q.keep(r)
	}
	in.PageSize, in.PageToken = MaxPageSize, ""
	var current []*Request
	for {
		page, next, err := is.List(ctx, caller, in)
		if err != nil {
			return err
		}
		current = append(current, page...)
		if next == "" {
			break
		}
		in.PageToken = next
	}
	for _, r := range slices.Backward(current) {
		if err := send(r); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-is.done:
			return fmt.Errorf("%w: the issuer is shutting down; reconnect", ErrUnavailable)
		case r, ok := <-sub.ch:
			if !ok {
				return fmt.Errorf("%w: watcher fell behind; reconnect", ErrState)
			}
			if match(r) {
				if err := send(r); err != nil {
					return err
				}
			}
		}
	}
}

func validID(s string) bool {
	if len(s) != 27 || s[0] != 'r' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
