package verifier_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/syncbuf"
	"github.com/jitgrant/jitgrant/issuer/ca"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeIssuer is the issuer's revocation API, served for real on loopback,
// with the events its stream sends pushed by the test.
type fakeIssuer struct {
	pb.UnimplementedIssuerServer
	events  chan *pb.RevocationEvent // a nil event ends the stream with an error
	streams atomic.Int32             // streams opened
	open    atomic.Int32             // stream handlers running

	mu        sync.Mutex
	uses      map[string]uint32
	acks      []string
	failUse   bool
	exhausted bool
}

func (f *fakeIssuer) WatchRevocations(_ *pb.WatchRevocationsRequest, s grpc.ServerStreamingServer[pb.RevocationEvent]) error {
	f.streams.Add(1)
	f.open.Add(1)
	defer f.open.Add(-1)
	for {
		select {
		case ev := <-f.events:
			if ev == nil {
				return status.Error(codes.Unavailable, "fake issuer: stream dropped")
			}
			if err := s.Send(ev); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func (f *fakeIssuer) ReportUse(_ context.Context, in *pb.ReportUseRequest) (*pb.ReportUseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failUse {
		return nil, status.Error(codes.Unavailable, "fake issuer: ReportUse down")
	}
	f.uses[in.GetGrantId()] += in.GetUses()
	return &pb.ReportUseResponse{TotalUses: f.uses[in.GetGrantId()], Exhausted: f.exhausted}, nil
}

func (f *fakeIssuer) AckRevocations(_ context.Context, in *pb.AckRevocationsRequest) (*pb.AckRevocationsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, in.GetGrantIds()...)
	return &pb.AckRevocationsResponse{}, nil
}

func (f *fakeIssuer) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeIssuer) usesOf(id string) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uses[id]
}

func (f *fakeIssuer) acked(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.acks, id)
}

// event is a revocation event announcing jitd's default heartbeat.
func event(snapshot bool, revoked ...string) *pb.RevocationEvent {
	ev := &pb.RevocationEvent{Snapshot: snapshot, Time: timestamppb.Now(), HeartbeatInterval: durationpb.New(verifier.DefaultHeartbeat)}
	for _, id := range revoked {
		ev.Revoked = append(ev.Revoked, &pb.Revocation{GrantId: id, NotAfter: timestamppb.New(time.Now().Add(time.Hour))})
	}
	return ev
}

// startFeed starts a fake issuer and a Feed following it, run until the test
// ends.
func startFeed(t *testing.T, cfg verifier.FeedConfig) (*verifier.Feed, *fakeIssuer, *syncbuf.Buffer) {
	t.Helper()
	fi := &fakeIssuer{events: make(chan *pb.RevocationEvent), uses: map[string]uint32{}}
	srv := grpc.NewServer()
	pb.RegisterIssuerServer(srv, fi)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	cfg.Client = pb.NewIssuerClient(cc)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	feed, err := verifier.NewFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Feed.Run: %v", err)
		}
		cc.Close()
		srv.Stop()
	})
	return feed, fi, logs
}

// eventually waits, up to a generous deadline, for cond to hold.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewFeedConfig(t *testing.T) {
	cc, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := pb.NewIssuerClient(cc)
	tests := []struct {
		name    string
		cfg     verifier.FeedConfig
		wantErr string
	}{
		{"no client", verifier.FeedConfig{}, "Client is required"},
		{"shorter than two heartbeats", verifier.FeedConfig{Client: client, StaleAfter: 3 * time.Second},
			"StaleAfter 3s is less than two of the issuer's heartbeats (2 × 5s): a healthy feed would look stale; use at least 10s"},
		{"just under two heartbeats", verifier.FeedConfig{Client: client, StaleAfter: 9*time.Second + 999*time.Millisecond}, "use at least 10s"},
		{"two heartbeats", verifier.FeedConfig{Client: client, StaleAfter: 2 * verifier.DefaultHeartbeat}, ""},
		{"default", verifier.FeedConfig{Client: client}, ""},
		{"backoff bounds reordered", verifier.FeedConfig{Client: client, MinBackoff: time.Minute, MaxBackoff: time.Second}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifier.NewFeed(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewFeed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewFeed: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestFeedRefusesLongHeartbeat: an issuer whose heartbeat is longer than
// half of StaleAfter would make a healthy feed look stale between two
// heartbeats; the feed refuses its stream, says why, and counts as out of
// contact until the issuer's heartbeat fits.
func TestFeedRefusesLongHeartbeat(t *testing.T) {
	feed, fi, logs := startFeed(t, verifier.FeedConfig{StaleAfter: 10 * time.Second, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	long := event(true)
	long.HeartbeatInterval = durationpb.New(30 * time.Second)
	fi.events <- long
	eventually(t, "the refusal is logged", func() bool {
		return strings.Contains(logs.String(), "the issuer's heartbeat is 30s, and StaleAfter 10s is less than two of them: refusing the feed; set StaleAfter to at least 1m0s")
	})
	if !feed.LastContact().IsZero() || !feed.RefuseStale(time.Unix(0, 0)) {
		t.Fatalf("a stream with a 30s heartbeat counted as contact (last contact %v)", feed.LastContact())
	}
	// The next event must reach the new stream, not the refused one.
	eventually(t, "the refused stream closed and a new one open", func() bool { return fi.streams.Load() >= 2 && fi.open.Load() == 1 })
	fi.events <- event(true)
	eventually(t, "contact with a 5s heartbeat", func() bool { return !feed.LastContact().IsZero() })
	if feed.RefuseStale(time.Unix(0, 0)) {
		t.Error("a fresh feed refused a grant")
	}
	if got := collectorValue(t, feed, "jitgrant_verifier_revocation_feed_reconnects_total"); got < 1 {
		t.Errorf("reconnects = %v, want at least 1", got)
	}
}

// TestStaleModes: once the feed has had no contact for StaleAfter,
// FailClosed refuses every grant, and KeepIssuedBefore refuses the grants
// issued after the last contact, by their issue time (NotBefore plus the
// issuer's backdate), not by their backdated NotBefore.
func TestStaleModes(t *testing.T) {
	if verifier.IssuerBackdate != ca.Backdate {
		t.Fatalf("verifier.IssuerBackdate %v, issuer/ca.Backdate %v: they must be equal", verifier.IssuerBackdate, ca.Backdate)
	}
	tests := []struct {
		mode                  verifier.StaleMode
		wantBefore, wantAfter codes.Code
	}{
		{verifier.KeepIssuedBefore, codes.OK, codes.PermissionDenied},
		{verifier.FailClosed, codes.PermissionDenied, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(map[verifier.StaleMode]string{verifier.KeepIssuedBefore: "KeepIssuedBefore", verifier.FailClosed: "FailClosed"}[tt.mode], func(t *testing.T) {
			var feed *verifier.Feed
			var fi *fakeIssuer
			e := newEnv(t, func(c *verifier.Config) {
				feed, fi, _ = startFeed(t, verifier.FeedConfig{Mode: tt.mode, Clock: c.Clock})
				c.Revocations = feed
			})
			fi.events <- event(true)
			eventually(t, "first contact", func() bool { return !feed.LastContact().IsZero() })
			// Issued at the last contact, then 5 s after it: the later
			// grant's NotBefore (backdated 10 s) is still before the contact.
			before := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "before", Scopes: scopes(mGetBalance)}))
			e.clock.Add(5 * time.Second)
			afterSVID := e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "after", Scopes: scopes(mGetBalance)})
			if !afterSVID.Certificates[0].NotBefore.Before(feed.LastContact()) {
				t.Fatalf("the test needs a grant whose NotBefore %v is before the last contact %v", afterSVID.Certificates[0].NotBefore, feed.LastContact())
			}
			after := e.dial(afterSVID)
			runRPCs(t, after, "after", []rpc{{mGetBalance, "", codes.OK, ""}})
			e.clock.Add(time.Minute) // stale
			runRPCs(t, before, "before", []rpc{{mGetBalance, "", tt.wantBefore, "revocation status unknown"}})
			runRPCs(t, after, "after", []rpc{{mGetBalance, "", tt.wantAfter, "revocation status unknown"}})
			// Contact is back: both are accepted again.
			last := feed.LastContact()
			fi.events <- event(false)
			eventually(t, "contact again", func() bool { return feed.LastContact().After(last) })
			runRPCs(t, before, "before", []rpc{{mGetBalance, "", codes.OK, ""}})
			runRPCs(t, after, "after", []rpc{{mGetBalance, "", codes.OK, ""}})
		})
	}
}

// TestFeedFollowsIssuer: snapshots, revocations and their
// acknowledgements, use reports (retried when the issuer fails them, and a
// grant the issuer says is exhausted revoked at once), a dropped stream and
// the feed's metrics.
func TestFeedFollowsIssuer(t *testing.T) {
	var feed *verifier.Feed
	var fi *fakeIssuer
	var logs *syncbuf.Buffer
	e := newEnv(t, func(c *verifier.Config) {
		feed, fi, logs = startFeed(t, verifier.FeedConfig{Mode: verifier.FailClosed, Clock: c.Clock, MinBackoff: time.Millisecond})
		c.Revocations = feed
	})
	fi.events <- event(true, "gone")
	eventually(t, "the snapshot", func() bool { return feed.Revoked("gone") })
	runRPCs(t, e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "gone", Scopes: scopes(mGetBalance)})), "",
		[]rpc{{mGetBalance, "", codes.PermissionDenied, "grant revoked"}})

	// A revocation on the open stream is applied and acknowledged.
	live := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "live", Scopes: scopes(mGetBalance)}))
	runRPCs(t, live, "live", []rpc{{mGetBalance, "", codes.OK, ""}})
	fi.events <- event(false, "live")
	eventually(t, "the revocation is acknowledged", func() bool { return fi.acked("live") })
	runRPCs(t, live, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "grant revoked"}})

	// Uses of a limited grant reach the issuer; a failed report is kept and
	// sent with the next one.
	limited := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "limited", Scopes: scopes(mGetBalance), UseLimit: 10}))
	runRPCs(t, limited, "limited", []rpc{{mGetBalance, "", codes.OK, ""}})
	eventually(t, "one use reported", func() bool { return fi.usesOf("limited") == 1 })
	fi.set(func() { fi.failUse = true })
	runRPCs(t, limited, "limited", []rpc{{mGetBalance, "", codes.OK, ""}})
	eventually(t, "the failed report is logged", func() bool { return strings.Contains(logs.String(), "reporting grant uses failed") })
	fi.set(func() { fi.failUse, fi.exhausted = false, true })
	runRPCs(t, limited, "limited", []rpc{{mGetBalance, "", codes.OK, ""}})
	eventually(t, "three uses reported", func() bool { return fi.usesOf("limited") == 3 })
	// The issuer said the grant is exhausted: it is revoked here at once.
	eventually(t, "the exhausted grant revoked", func() bool { return feed.Revoked("limited") })
	runRPCs(t, limited, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "grant revoked"}})

	// A dropped stream is reopened; its snapshot replaces the set.
	fi.events <- nil
	eventually(t, "the stream reopened", func() bool { return fi.streams.Load() == 2 })
	fi.events <- event(true, "other")
	eventually(t, "the new snapshot", func() bool { return feed.Revoked("other") && !feed.Revoked("gone") })
	if feed.Set().Len() != 1 {
		t.Errorf("set holds %d IDs after a snapshot of one", feed.Set().Len())
	}
	for _, tc := range []struct {
		name string
		want func(float64) bool
	}{
		{"jitgrant_verifier_revocation_feed_reconnects_total", func(v float64) bool { return v >= 1 }},
		{"jitgrant_verifier_revocation_feed_connected", func(v float64) bool { return v == 1 }},
		{"jitgrant_verifier_revocations", func(v float64) bool { return v == 1 }},
		{"jitgrant_verifier_revocations_staleness_seconds", func(v float64) bool { return v >= 0 }},
	} {
		if got := collectorValue(t, feed, tc.name); !tc.want(got) {
			t.Errorf("%s = %v", tc.name, got)
		}
	}
	if problems, err := testutil.CollectAndLint(feed); err != nil || len(problems) > 0 {
		t.Errorf("feed collector lint: %v %v", problems, err)
	}
}
