package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"google.golang.org/protobuf/types/known/durationpb"
)

// measureRevoke starts cfg.verifiers feeds (as the ledger service), issues
// cfg.revocations grants to holder, then revokes them one by one as ops and
// measures from RevokeGrant's return until every feed holds the revocation,
// which is when every verifier refuses the grant.
func measureRevoke(ctx context.Context, cfg config, holder, ops, service *client, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: deferred calls run last-in first-out
	defer cancel()
	feeds := make([]*verifier.Feed, cfg.verifiers)
	for i := range feeds {
		f, err := verifier.NewFeed(verifier.FeedConfig{
			Client: service.api, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		feeds[i] = f
		wg.Go(func() { f.Run(ctx) })
	}
	for _, f := range feeds {
		for f.LastContact().IsZero() {
			time.Sleep(time.Millisecond)
		}
	}
	ids := make([]string, cfg.revocations)
	for i := range ids {
		res, err := holder.api.CreateRequest(ctx, &pb.CreateRequestRequest{
			Scopes: []*pb.Scope{{Method: "/bench.v1.Target/Call"}}, Ttl: durationpb.New(5 * time.Minute),
		})
		if err != nil {
			return err
		}
		ids[i] = res.GetRequest().GetId()
	}
	lat := make([]time.Duration, 0, len(ids))
	calls := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		start := time.Now()
		res, err := ops.api.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: id})
		if err != nil {
			return err
		}
		returned := time.Now()
		calls = append(calls, returned.Sub(start))
		if n := res.GetVerifiersAcknowledged(); int(n) != len(feeds) {
			return fmt.Errorf("grant %s: %d of %d verifiers acknowledged", id, n, len(feeds))
		}
		deadline := returned.Add(10 * time.Second)
		for _, f := range feeds {
			for !f.Revoked(id) {
				if time.Now().After(deadline) {
					return fmt.Errorf("grant %s: a verifier did not learn of its revocation within 10s", id)
				}
				time.Sleep(20 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(returned))
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Microsecond)
	}
	slices.Sort(lat)
	slices.Sort(calls)
	fmt.Fprintf(out, "scenario=revoke verifiers=%d revocations=%d\n", len(feeds), len(lat))
	fmt.Fprintf(out, "RevokeGrant call (returns once every verifier acknowledged): p50=%s p99=%s max=%s\n",
		pct(calls, 0.50), pct(calls, 0.99), pct(calls, 1))
	fmt.Fprintf(out, "RevokeGrant returned -> every verifier refuses: p50=%s p99=%s max=%s\n",
		pct(lat, 0.50), pct(lat, 0.99), pct(lat, 1))
	return nil
}
