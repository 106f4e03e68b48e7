package wlapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
)

// BenchmarkFetchX509SVID opens a stream and receives its first message:
// two identity SVIDs and 10 grant SVIDs, all cached after the first
// iteration, so that it measures attestation, reading the grants and the
// stream itself. The baseline, grants=0, holds the identities only.
func BenchmarkFetchX509SVID(b *testing.B) {
	for _, n := range []int{0, 10} {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			e := newEnv(b, uid)
			for range n {
				e.grant()
				e.clock.Add(time.Second)
			}
			c := e.rawClient()
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithCancel(withHeader(context.Background()))
				s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
				if err != nil {
					b.Fatal(err)
				}
				resp, err := s.Recv()
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Svids) != 2+n {
					b.Fatalf("got %d SVIDs, want %d", len(resp.Svids), 2+n)
				}
				cancel()
			}
		})
	}
}
