// Package issuer is jitgrant's issuer: access requests, their review under
// policy, issuance of grant X.509-SVIDs, and the gRPC service jitd serves.
//
// [Issuer] holds the domain logic and knows nothing of gRPC: every method
// takes the caller's SPIFFE ID (authenticated by mTLS in the service) and
// returns errors wrapping ErrNotFound, ErrInvalid, ErrPermission or ErrState.
// [Service] adapts it to the jitgrant.v1.Issuer API. State lives in a
// [Store]; each state change commits together with its audit entry.
package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Policies gives the policy in force; policy.Store implements it.
type Policies interface {
	Current() *policy.Policy
}

// InputSource fetches the facts the rule matching a request needs before
// the policy decides it (see policy.Needs): a ticket check, the requester's
// on-call status. It must not fail: a fetch that fails returns its input
// with Err set, for the rule's on_error. inputs.Source implements it.
type InputSource interface {
	Fetch(ctx context.Context, requester spiffeid.ID, need policy.Needs) (*policy.Ticket, *policy.OnCall)
}

// Config configures an Issuer.
type Config struct {
	// CA mints grant SVIDs. Required.
	CA *ca.CA
	// Store keeps requests. Required.
	Store Store
	// Policies gives the policy in force. Required.
	Policies Policies
	// ID is the issuer's own SPIFFE ID, the actor of the entries it writes
	// on its own (issuance, expiry, timeouts). Required.
	ID spiffeid.ID
	// Clock is the time source. Default time.Now.
	Clock func() time.Time
	// Logger receives the issuer's logs. Default slog.Default().
	Logger *slog.Logger
	// MaxStartDelay bounds how far ahead a grant may be scheduled. Default
	// 7 days.
	MaxStartDelay time.Duration
	// MinTTL is the shortest grant a request may ask for: a shorter TTL is
	// refused (ErrInvalid, naming ttl) and nothing is stored. Default
	// DefaultMinTTL; tests and demos with short grants set it lower.
	MinTTL time.Duration
	// ExpiringLead is how long before a grant's end the issuer sends its
	// expiring notice (audit action grant.expiring, webhook event
	// expiring), once per grant per end. Default DefaultExpiringLead;
	// negative sends none. A grant that lasts no longer than the lead time
	// gets none: its issued event already says when it ends.
	ExpiringLead time.Duration
	// Inputs, if set, fetches what a rule needs before the policy decides.
	// Without it a rule that needs an input gets none, and its on_error
	// decides (deny by default).
	Inputs InputSource
	// OnChange, if set, is called after every committed change of a
	// request (for notifications); it must not block.
	OnChange func(r *Request, action audit.Action)
}

// DefaultMinTTL is Config.MinTTL's default: a grant shorter than this would
// spend a good part of its life reaching the workload and the verifiers.
const DefaultMinTTL = 30 * time.Second

// Issuer runs the request lifecycle. It is safe for concurrent use.
type Issuer struct {
	cfg     Config
	hub     *hub
	revs    *revocations
	issued  *issuedIndex
	metrics *metrics
	order   *publishOrder
	armed   *expiringTimers
	done    chan struct{} // closed by Close: streams end
	close   sync.Once
}

// Close ends every WatchRequests and WatchRevocations stream, so that a
// server can stop gracefully. The issuer keeps serving other calls.
func (is *Issuer) Close() {
	is.close.Do(func() { close(is.done) })
}

// New returns an Issuer for cfg.
func New(cfg Config) (*Issuer, error) {
	switch {
	case cfg.CA == nil:
		return nil, errors.New("issuer: config: CA is required")
	case cfg.Store == nil:
		return nil, errors.New("issuer: config: Store is required")
	case cfg.Policies == nil:
		return nil, errors.New("issuer: config: Policies is required")
	case cfg.ID.IsZero():
		return nil, errors.New("issuer: config: ID is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxStartDelay <= 0 {
		cfg.MaxStartDelay = 7 * 24 * time.Hour
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.ExpiringLead == 0 {
		cfg.ExpiringLead = DefaultExpiringLead
	}
	is := &Issuer{cfg: cfg, hub: newHub(), revs: newRevocations(), issued: newIssuedIndex(), metrics: newMetrics(), order: newPublishOrder(), armed: newExpiringTimers(), done: make(chan struct{})}
	if err := is.loadRevocations(context.Background()); err != nil {
		return nil, fmt.Errorf("issuer: loading revocations: %w", err)
	}
	if err := is.loadLive(context.Background()); err != nil {
		return nil, fmt.Errorf("issuer: loading live requests: %w", err)
	}
	if err := is.loadUnreviewed(context.Background()); err != nil {
		return nil, fmt.Errorf("issuer: loading break-glass grants to review: %w", err)
	}
	return is, nil
}

// now returns the issuer's time, truncated to the microsecond so that what
// is stored (as JSON) reads back equal.
func (is *Issuer) now() time.Time { return is.cfg.Clock().UTC().Truncate(time.Microsecond) }

// policy returns the policy in force, failing closed when there is none.
func (is *Issuer) policy() (*policy.Policy, error) {
	p := is.cfg.Policies.Current()
	if p == nil {
		return nil, fmt.Errorf("%w: no policy is loaded", ErrState)
	}
	return p, nil
}

// maxConflictRetries bounds the optimistic retries of one change.
const maxConflictRetries = 16

// change applies a transition to the request with this ID and commits it with
// its audit record, retrying when another change committed first. transition
// gets a private copy of the current request and returns the audit record,
// or an error that aborts the change. errSkip aborts it without error.
func (is *Issuer) change(ctx context.Context, id string, transition func(r *Request) (audit.Record, error)) (*Request, error) {
	return is.changeFrom(ctx, &Request{ID: id}, transition)
}

// changeFrom is change starting from known, the request as the caller last
// saw it; a known with Version 0 is read from the store first.
func (is *Issuer) changeFrom(ctx context.Context, known *Request, transition func(r *Request) (audit.Record, error)) (*Request, error) {
	return is.changeSteps(ctx, known, func(r *Request, s *steps) error {
		rec, err := transition(r)
		if err != nil {
			return err
		}
		s.reqs, s.recs = append(s.reqs, r), append(s.recs, rec) // r is final: no snapshot needed
		return nil
	})
}

// steps collects the steps of one change that writes several audit
// entries (a review and the conclusion of a break-glass review, a use and
// the revocation it causes): each step is a snapshot of the request after
// it and its record.
type steps struct {
	reqs []*Request
	recs []audit.Record
}

// add records a step: a snapshot of r as it is now, and its record.
func (s *steps) add(r *Request, rec audit.Record) {
	s.reqs, s.recs = append(s.reqs, r.clone()), append(s.recs, rec)
}

// changeSteps applies a transition of one or more steps to the request
// known (read from the store when its Version is 0, and on every retry)
// and commits them together in one Put, retrying when another change
// committed first: the request's version advances by one per step, its
// audit entries are consecutive, and watchers, metrics and notifications
// see each step in turn. transition gets a private copy of the current
// request; an error aborts the change (errSkip without error), and a
// transition that adds no step changes nothing.
func (is *Issuer) changeSteps(ctx context.Context, known *Request, transition func(r *Request, s *steps) error) (*Request, error) {
	id := known.ID
	for range maxConflictRetries {
		cur := known
		if cur.Version == 0 {
			var err error
			if cur, err = is.cfg.Store.Get(ctx, id); err != nil {
				return nil, err
			}
		}
		known = &Request{ID: id} // a retry reads the store
		var s steps
		if err := transition(cur.clone(), &s); err != nil {
			return cur, err
		}
		if len(s.reqs) == 0 {
			return cur, errSkip
		}
		now := is.now()
		for i, r := range s.reqs {
			r.Version, r.UpdateTime = cur.Version+uint64(i)+1, now
			s.recs[i].Subject = id
		}
		last := s.reqs[len(s.reqs)-1]
		err := is.cfg.Store.Put(ctx, cur, last, s.recs...)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for i, r := range s.reqs {
			is.committed(r, s.recs[i].Action)
		}
		return last, nil
	}
	return nil, fmt.Errorf("issuer: request %s: %w: too many concurrent changes", id, ErrConflict)
}

// errSkip ends a transition that has nothing to do.
var errSkip = errors.New("issuer: nothing to do")

// committed tells watchers, metrics and notifications about a change that
// recorded actions and left r. A report that arrives after a newer one of
// the same request is dropped (see publishOrder): only the latest state
// counts.
func (is *Issuer) committed(r *Request, actions ...audit.Action) {
	if !is.order.admit(r, is.now()) {
		return
	}
	is.issued.update(r)
	is.hub.publish(r)
	for _, action := range actions {
		is.metrics.observe(r, action)
		if is.cfg.OnChange != nil {
			is.cfg.OnChange(r, action)
		}
	}
	if r.State == StateApproved {
		is.issueAtStart(r)
	}
	is.armExpiring(r)
}

// issueAtStart issues an approved, scheduled request when its start comes,
// without waiting for the sweeper's next pass (which still catches it if
// this wake-up is lost, for instance across a restart). The timer runs on
// real time; issueIfDue decides by the issuer's clock.
func (is *Issuer) issueAtStart(r *Request) {
	wait := r.StartTime.Sub(is.now())
	if wait <= 0 {
		return // due now: the caller issues it
	}
	time.AfterFunc(wait, func() {
		select {
		case <-is.done:
			return
		default:
		}
		if _, err := is.issueIfDue(context.Background(), r); err != nil {
			is.cfg.Logger.Error("issuer: issuing at the scheduled start", "request", r.ID, "error", err)
		}
	})
}

// record builds an audit record for an action on a request.
func record(actor spiffeid.ID, action audit.Action, details map[string]string) audit.Record {
	return audit.Record{Actor: actor.String(), Action: action, Details: details}
}
