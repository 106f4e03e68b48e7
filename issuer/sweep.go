package issuer

import (
	"context"
	"errors"
	"time"

	"github.com/jitgrant/jitgrant/audit"
)

// Sweep processes every request whose deadline has come: a pending request
// past its review deadline times out, an approved request whose start has
// come is issued (or ended, if it cannot be: see issueIfDue), an issued
// grant past its end expires, and one whose end is near gets its expiring
// notice (see Config.ExpiringLead). Each move is audited. It returns every error
// and goes on past them.
func (is *Issuer) Sweep(ctx context.Context) error {
	var errs []error
	seen := map[string]bool{}
	for {
		due, err := is.cfg.Store.Due(ctx, is.now(), MaxPageSize)
		if err != nil {
			return err
		}
		progress := false
		for _, r := range due {
			if seen[r.ID] {
				continue // failed earlier in this pass
			}
			seen[r.ID], progress = true, true
			if err := is.sweepOne(ctx, r); err != nil {
				is.cfg.Logger.Error("issuer: sweep", "request", r.ID, "error", err)
				errs = append(errs, err)
			}
		}
		if !progress || len(due) < MaxPageSize {
			return errors.Join(errs...)
		}
	}
}

func (is *Issuer) sweepOne(ctx context.Context, r *Request) error {
	now := is.now()
	switch {
	case r.State == StatePending && !now.Before(r.ReviewDeadline):
		_, err := is.change(ctx, r.ID, func(r *Request) (audit.Record, error) {
			if r.State != StatePending {
				return audit.Record{}, errSkip
			}
			r.State, r.Missing = StateTimedOut, nil
			return record(is.cfg.ID, audit.ActionRequestTimedOut, map[string]string{"deadline": r.ReviewDeadline.Format(time.RFC3339)}), nil
		})
		return skipOK(err)
	case r.State == StateApproved && !r.StartTime.After(now):
		_, err := is.issueIfDue(ctx, r)
		return err
	case r.State == StateIssued && now.After(r.NotAfter):
		_, err := is.change(ctx, r.ID, func(r *Request) (audit.Record, error) {
			if r.State != StateIssued {
				return audit.Record{}, errSkip
			}
			r.State, r.EndCause = StateExpired, EndExpired
			return record(is.cfg.ID, audit.ActionGrantExpired, map[string]string{"cause": EndExpired, "not_after": r.NotAfter.Format(time.RFC3339)}), nil
		})
		return skipOK(err)
	case r.expiringPending() && !now.Before(r.ExpiringAt):
		return is.notifyExpiring(ctx, r)
	}
	return nil
}

func skipOK(err error) error {
	if errors.Is(err, errSkip) {
		return nil
	}
	return err
}

// Run sweeps on every tick until ctx ends. Tests pass their own ticks; jitd
// passes a time.Ticker's channel.
func (is *Issuer) Run(ctx context.Context, ticks <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			_ = is.Sweep(ctx) // each failure is logged; the next tick retries
		}
	}
}
