package jitctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxWatchRetries is how many times in a row a broken watch stream is
// opened again before giving up.
const maxWatchRetries = 5

// watch streams the requests in selects to fn, first the current ones, then
// every change, until fn returns done or an error, ctx ends, or the stream
// fails for good. A stream that ends, breaks with Unavailable, or is dropped
// because the watcher fell behind is opened again (the issuer replays the
// current requests first), up to maxWatchRetries times in a row without an
// event in between.
func (a *app) watch(ctx context.Context, c *client, in *pb.WatchRequestsRequest, fn func(*pb.AccessRequest) (done bool, err error)) error {
	failures := 0
	for {
		err := a.watchOnce(ctx, c, in, func(r *pb.AccessRequest) (bool, error) {
			failures = 0
			return fn(r)
		})
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !retryable(err) || failures >= maxWatchRetries {
			if errors.Is(err, io.EOF) {
				return errors.New("the issuer ended the watch stream")
			}
			return err
		}
		failures++
		select {
		case <-time.After(min(100*time.Millisecond<<failures, 5*time.Second)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchOnce runs one stream; nil means fn said done.
func (a *app) watchOnce(ctx context.Context, c *client, in *pb.WatchRequestsRequest, fn func(*pb.AccessRequest) (bool, error)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.WatchRequests(sctx, in)
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return err
		}
		done, err := fn(ev.GetRequest())
		if err != nil || done {
			return err
		}
	}
}

// retryable reports whether a broken watch stream is worth opening again.
func retryable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.FailedPrecondition, codes.ResourceExhausted:
		return true
	}
	return false
}

// waitIssued waits until request id is ISSUED and returns it. A request
// that ends otherwise (denied, canceled, timed out, revoked, expired), a
// timeout (0: none) and an interruption are errors; the request as last
// seen is returned with them. Progress goes to stderr.
func (a *app) waitIssued(ctx context.Context, c *client, id string, timeout time.Duration) (*pb.AccessRequest, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var last *pb.AccessRequest
	lastLine := ""
	err := a.watch(wctx, c, &pb.WatchRequestsRequest{Requester: c.id.String()}, func(r *pb.AccessRequest) (bool, error) {
		if r.GetId() != id {
			return false, nil
		}
		last = r
		switch r.GetState() {
		case pb.State_STATE_PENDING, pb.State_STATE_APPROVED:
			if line := summary(r); line != lastLine {
				fmt.Fprintln(a.stderr, "waiting:", line)
				lastLine = line
			}
			return false, nil
		}
		return true, nil
	})
	still := "in an unknown state"
	if last != nil {
		still = stateName(last.GetState())
	}
	switch {
	case err == nil && last.GetState() == pb.State_STATE_ISSUED:
		return last, nil
	case err == nil:
		return last, withStatus(endedStatus(last.GetState()), errors.New(ended(last)))
	case ctx.Err() != nil:
		return last, fmt.Errorf("request %s: stopped waiting (%v); it is still %s", id, context.Cause(ctx), still)
	case wctx.Err() != nil || timeout > 0 && status.Code(err) == codes.DeadlineExceeded:
		// The issuer may see the deadline pass (and say so) before the
		// local context does.
		return last, withStatus(ExitTimedOut, fmt.Errorf("request %s: gave up after --wait-timeout %s; it is still %s", id, timeout, still))
	}
	return last, err
}

// endedStatus is the exit status of waiting for a request that ended in
// state s without being issued.
func endedStatus(s pb.State) int {
	switch s {
	case pb.State_STATE_TIMED_OUT, pb.State_STATE_EXPIRED:
		return ExitTimedOut
	case pb.State_STATE_DENIED, pb.State_STATE_CANCELED, pb.State_STATE_REVOKED:
		return ExitDenied
	}
	return ExitFailure
}

// ended says why a request did not become a usable grant.
func ended(r *pb.AccessRequest) string {
	id := r.GetId()
	switch r.GetState() {
	case pb.State_STATE_DENIED:
		return fmt.Sprintf("request %s was DENIED%s", id, endedBy(r))
	case pb.State_STATE_CANCELED:
		return fmt.Sprintf("request %s was CANCELED%s", id, endedBy(r))
	case pb.State_STATE_TIMED_OUT:
		return fmt.Sprintf("request %s TIMED_OUT: nobody approved it by its review deadline %s", id, fmtTS(r.GetReviewDeadline()))
	case pb.State_STATE_REVOKED:
		return fmt.Sprintf("grant %s was REVOKED%s", id, endedBy(r))
	case pb.State_STATE_EXPIRED:
		return fmt.Sprintf("grant %s EXPIRED at %s", id, fmtTS(r.GetNotAfter()))
	}
	return summary(r)
}
