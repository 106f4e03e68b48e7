package jitctl

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Grant deliveries of `jitctl request --delivery`.
const (
	// deliveryAuto picks deliveryWorkloadAPI when the caller's identity comes
	// from the Workload API, deliveryFiles otherwise.
	deliveryAuto = "auto"
	// deliveryWorkloadAPI sends no CSR: jitd makes the grant's key and serves
	// the grant SVID on its Workload API, next to the caller's identity.
	deliveryWorkloadAPI = "workload-api"
	// deliveryFiles makes the key here and sends a CSR; fetch writes the
	// certificate beside the key.
	deliveryFiles = "files"
)

// workloadIdentity takes the caller's identity from the Workload API at
// $SPIFFE_ENDPOINT_SOCKET. One fetch comes first so that a socket that
// refuses the caller, or is not there, is reported as such: go-spiffe's
// X509Source retries both until its context ends, which would read as a
// bare "context deadline exceeded".
func (a *app) workloadIdentity(ctx context.Context) (*identity, error) {
	addr := os.Getenv(EnvWorkloadAPI)
	wctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if _, err := workloadapi.FetchX509Context(wctx); err != nil {
		return nil, workloadAPIError(addr, err)
	}
	src, err := workloadapi.NewX509Source(wctx)
	if err != nil {
		return nil, workloadAPIError(addr, err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("identity from the Workload API at %s: %w", addr, err)
	}
	return &identity{id: svid.ID, svid: src, bundles: src, close: src.Close, fromWorkloadAPI: true}, nil
}

// workloadAPIError says what a failed Workload API call means for the
// caller. The gRPC status stays in the chain, so the exit status follows it
// (PermissionDenied: refused, Unavailable: unreachable).
func workloadAPIError(addr string, err error) error {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return fmt.Errorf("the Workload API at %s refused this process: no registration entry matches it (ask jitd's operator for an entry with this process's unix:uid and unix:path selectors): %w", addr, err)
	case codes.Unavailable:
		return fmt.Errorf("no Workload API at %s (is jitd serving --workload-socket there?): %w", addr, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return withStatus(ExitTimedOut, fmt.Errorf("the Workload API at %s sent no identity in time: %w", addr, err))
	}
	return fmt.Errorf("identity from the Workload API at %s: %w", addr, err)
}

// hintWatcher reports when an X.509 context carries an SVID with its hint.
type hintWatcher struct {
	hint  string
	found chan struct{}
	err   chan error
}

// OnX509ContextUpdate implements workloadapi.X509ContextWatcher.
func (w *hintWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	for _, s := range c.SVIDs {
		if s.Hint == w.hint {
			select {
			case w.found <- struct{}{}:
			default:
			}
			return
		}
	}
}

// OnX509ContextWatchError implements workloadapi.X509ContextWatcher.
func (w *hintWatcher) OnX509ContextWatchError(err error) {
	select {
	case w.err <- err:
	default:
	}
}

// waitOnWorkloadAPI waits until the Workload API serves the grant id (an
// SVID whose hint is id), for at most --timeout.
func (a *app) waitOnWorkloadAPI(ctx context.Context, id string) error {
	addr := os.Getenv(EnvWorkloadAPI)
	wctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	w := &hintWatcher{hint: id, found: make(chan struct{}, 1), err: make(chan error, 1)}
	done := make(chan error, 1)
	go func() { done <- workloadapi.WatchX509Context(wctx, w) }()
	var last error
	for {
		select {
		case <-w.found:
			cancel()
			<-done
			return nil
		case last = <-w.err:
		case <-wctx.Done():
			<-done
			if last == nil {
				last = wctx.Err()
			}
			return withStatus(ExitTimedOut, fmt.Errorf("grant %s is issued but the Workload API at %s did not serve it within %s: %w", id, addr, a.timeout, last))
		}
	}
}
