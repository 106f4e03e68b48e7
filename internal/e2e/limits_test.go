package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStreamLimitPerIdentity: with a cap of 8 streams per identity, a
// requester opening 20 WatchRequests streams holds 8 and is refused the
// rest with ResourceExhausted, counted and logged once; other callers are
// not affected, and a verifier's revocation feed (watch_revocations) is
// exempt while the same stream from a caller without the permission is not.
func TestStreamLimitPerIdentity(t *testing.T) {
	t.Parallel()
	const limit, opened = 8, 20
	e := newEnv(t, func(c *jitd.ServeConfig) {
		c.MetricsListen = "127.0.0.1:0"
		c.Limits.StreamsPerIdentity = limit
		withFeed := strings.Replace(testPolicy, "permissions:\n", "permissions:\n  watch_revocations: [\"spiffe://example.org/person/alice\"]\n", 1)
		if err := os.WriteFile(c.Dir.Policy(), []byte(withFeed), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	refund, _ := e.refund("INC-1: streams")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// open opens a stream and returns the status of its first message:
	// OK when the stream was accepted (it sends the requests it watches
	// first), the refusal otherwise.
	open := func(c pb.IssuerClient, in *pb.WatchRequestsRequest) codes.Code {
		t.Helper()
		s, err := c.WatchRequests(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s.Recv()
		if err == nil && ev.GetRequest().GetId() != refund {
			t.Fatalf("first message %v, want request %s", ev, refund)
		}
		return status.Code(err)
	}
	dev := e.client(dev)
	var got []codes.Code
	for range opened {
		got = append(got, open(dev, &pb.WatchRequestsRequest{}))
	}
	for i, code := range got {
		want := codes.OK
		if i >= limit {
			want = codes.ResourceExhausted
		}
		if code != want {
			t.Errorf("stream %d of dev: %v, want %v", i+1, code, want)
		}
	}
	body := scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics")
	if v, _ := metric(body, "jitgrant_streams_refused_total", `limit="per_identity"`); v != opened-limit {
		t.Errorf("jitgrant_streams_refused_total = %v, want %d", v, opened-limit)
	}
	if n := strings.Count(e.logs.String(), "stream cap per identity reached"); n != 1 {
		t.Errorf("the cap was logged %d times, want once:\n%s", n, e.logs.String())
	}

	// Another identity is not affected; at its own cap, its revocation
	// feed is exempt because it has watch_revocations.
	alice := e.client(alice)
	for i := range limit {
		if code := open(alice, &pb.WatchRequestsRequest{AwaitingMyReview: true}); code != codes.OK {
			t.Fatalf("stream %d of alice: %v", i+1, code)
		}
	}
	feed, err := alice.WatchRevocations(ctx, &pb.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := feed.Recv(); err != nil || !ev.GetSnapshot() {
		t.Errorf("alice's revocation feed at her stream cap: %v, %v; want the snapshot", ev, err)
	}
	// dev has no watch_revocations: the cap refuses the stream before the
	// permission check would.
	s, err := dev.WatchRevocations(ctx, &pb.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("dev's revocation feed at the cap: %v, want ResourceExhausted", err)
	}

	// Unary calls are not streams: dev still works.
	if _, err := dev.GetRequest(ctx, &pb.GetRequestRequest{Id: refund}); err != nil {
		t.Errorf("a unary call at the stream cap: %v", err)
	}
}

// TestConnectionLimits: each listener (the API, the Workload API socket and
// the metrics endpoint) holds at most its cap of connections; connections
// that never complete their handshake are closed after the handshake
// timeout, and a real client then gets through. The hits are logged and
// counted.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	const limit = 3
	sock := filepath.Join(t.TempDir(), "agent.sock")
	e := newEnv(t, func(c *jitd.ServeConfig) {
		c.MetricsListen, c.WorkloadSocket = "127.0.0.1:0", sock
		c.Entries = []attest.EntryConfig{{ID: "spiffe://example.org/workload/test", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}
		c.Clock = time.Now // the Workload API's certificates meet go-spiffe's real-time checks
		c.Limits.MaxConnections, c.Limits.WorkloadMaxConnections, c.Limits.MetricsMaxConnections = limit, limit, limit
		c.Limits.HandshakeTimeout = 300 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name, network, addr string
		// through is a real client's call, which must succeed.
		through func() error
	}{
		{"api", "tcp", e.srv.Addr(), func() error {
			_, err := e.client(dev).ListRequests(ctx, &pb.ListRequestsRequest{})
			return err
		}},
		{"workload", "unix", sock, func() error {
			c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.FetchX509SVID(ctx)
			return err
		}},
		{"metrics", "tcp", e.srv.MetricsAddr(), func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.srv.MetricsAddr()+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// limit+5 connections that never say a word.
			var silent []net.Conn
			for range limit + 5 {
				c, err := net.Dial(tc.network, tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				silent = append(silent, c)
			}
			labels := `listener="` + tc.name + `"`
			eventually(t, 30*time.Second, "the "+tc.name+" listener at its cap", func() bool {
				v, _ := metric(scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics"), "jitgrant_listener_cap_reached_total", labels)
				return v >= 1
			})
			if !regexp.MustCompile(`connection cap reached; [^"]*" listener=` + tc.name).MatchString(e.logs.String()) {
				t.Errorf("no log line for the %s cap", tc.name)
			}
			if tc.name != "metrics" {
				// gRPC listeners make room by closing the oldest
				// connection still in its handshake.
				v, _ := metric(scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics"), "jitgrant_listener_evicted_total", labels)
				if v < 1 {
					t.Errorf("jitgrant_listener_evicted_total{%s} = %v, want at least 1", labels, v)
				}
			}
			// A real client gets through once the silent connections are
			// closed (evicted, or after the handshake timeout).
			if err := tc.through(); err != nil {
				t.Fatalf("a real client of %s: %v", tc.name, err)
			}
			// jitd closed every silent connection.
			for i, c := range silent {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.ReadAll(c); err != nil {
					t.Errorf("silent connection %d: %v, want it closed by jitd", i, err)
				}
			}
		})
	}
}
