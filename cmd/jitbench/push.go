package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// arrivals records when each hint first appears on the workload's stream.
type arrivals struct {
	mu   sync.Mutex
	seen map[string]time.Time
	gone map[string]bool
	wake chan struct{}
}

func (a *arrivals) OnX509ContextUpdate(c *workloadapi.X509Context) {
	now := time.Now()
	a.mu.Lock()
	present := map[string]bool{}
	for _, s := range c.SVIDs {
		if s.Hint == "" {
			continue
		}
		present[s.Hint] = true
		if _, ok := a.seen[s.Hint]; !ok {
			a.seen[s.Hint] = now
		}
	}
	for h := range a.seen {
		if !present[h] {
			a.gone[h] = true
		}
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (*arrivals) OnX509ContextWatchError(error) {}

// waitFor waits until cond holds on the recorded arrivals.
func (a *arrivals) waitFor(ctx context.Context, cond func() bool) error {
	deadline := time.After(10 * time.Second)
	for {
		a.mu.Lock()
		ok := cond()
		a.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-a.wake:
		case <-deadline:
			return errors.New("timed out waiting for the Workload API stream")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// measurePush asks for grants as the workload (identity from the Workload
// API), approves each as ops, and measures from ApproveRequest's return to
// the grant SVID's arrival on the workload's open stream. Each grant is then
// revoked and seen to leave, so that the stream's set stays small.
func measurePush(ctx context.Context, cfg config, srv *jitd.Server, ops *client, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wl, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+srv.WorkloadSocket()))
	if err != nil {
		return err
	}
	defer wl.Close()
	a := &arrivals{seen: map[string]time.Time{}, gone: map[string]bool{}, wake: make(chan struct{}, 1)}
	go wl.WatchX509Context(ctx, a)
	x, err := wl.FetchX509Context(ctx)
	if err != nil {
		return err
	}
	self := x.DefaultSVID()
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(verifier.ClientCredentials(self, x.Bundles,
		tlsconfig.AuthorizeID(jitd.ServerID(self.ID.TrustDomain())))))
	if err != nil {
		return err
	}
	defer cc.Close()
	api := pb.NewIssuerClient(cc)
	lat := make([]time.Duration, 0, cfg.grants)
	for range cfg.grants {
		res, err := api.CreateRequest(ctx, &pb.CreateRequestRequest{
			Scopes: []*pb.Scope{{Method: "/bench.v1.Target/Call"}}, Ttl: durationpb.New(5 * time.Minute),
		})
		if err != nil {
			return err
		}
		id := res.GetRequest().GetId()
		if _, err := ops.api.ApproveRequest(ctx, &pb.ReviewRequest{Id: id}); err != nil {
			return err
		}
		approved := time.Now()
		if err := a.waitFor(ctx, func() bool { _, ok := a.seen[id]; return ok }); err != nil {
			return fmt.Errorf("grant %s: %w", id, err)
		}
		a.mu.Lock()
		lat = append(lat, max(0, a.seen[id].Sub(approved)))
		a.mu.Unlock()
		if _, err := api.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: id, AckTimeout: durationpb.New(0)}); err != nil {
			return err
		}
		if err := a.waitFor(ctx, func() bool { return a.gone[id] }); err != nil {
			return fmt.Errorf("grant %s after revocation: %w", id, err)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Microsecond)
	}
	fmt.Fprintf(out, "scenario=push grants=%d\n", len(lat))
	fmt.Fprintf(out, "ApproveRequest returned -> grant SVID on the workload's stream: p50=%s p99=%s max=%s\n",
		pct(0.50), pct(0.99), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}
