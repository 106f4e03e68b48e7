package verifier

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// StaleMode says what a verifier does with grants once its revocation feed
// has had no contact with the issuer for FeedConfig.StaleAfter.
type StaleMode int

const (
	// KeepIssuedBefore keeps accepting grants issued before the last
	// contact (their revocations up to then are known) and refuses newer
	// ones. A grant's issue time is read, to the second, from its
	// certificate: NotBefore plus [IssuerBackdate].
	KeepIssuedBefore StaleMode = iota
	// FailClosed refuses every grant until contact is back.
	FailClosed
)

// DefaultHeartbeat is the longest jitd's revocation stream stays silent: it
// sends a heartbeat event at least this often, and says so in every event
// (RevocationEvent.heartbeat_interval).
const DefaultHeartbeat = 5 * time.Second

// IssuerClient is the part of the issuer API a Feed uses; the generated
// jitgrantv1.IssuerClient implements it.
type IssuerClient interface {
	WatchRevocations(ctx context.Context, in *pb.WatchRevocationsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.RevocationEvent], error)
	ReportUse(ctx context.Context, in *pb.ReportUseRequest, opts ...grpc.CallOption) (*pb.ReportUseResponse, error)
	AckRevocations(ctx context.Context, in *pb.AckRevocationsRequest, opts ...grpc.CallOption) (*pb.AckRevocationsResponse, error)
}

// FeedConfig configures a Feed.
type FeedConfig struct {
	// Client reaches the issuer, authenticated with the service's SVID (the
	// caller needs the watch_revocations permission). Required.
	Client IssuerClient
	// StaleAfter is how long without any event before Mode applies.
	// Default 1 minute. It must be at least two heartbeats, so that one
	// late heartbeat does not make a healthy feed stale: NewFeed refuses
	// less than 2 × DefaultHeartbeat (10s), and the feed refuses a stream
	// whose issuer announces a heartbeat longer than StaleAfter/2 (it logs
	// why, reconnects with backoff, and counts as out of contact).
	StaleAfter time.Duration
	// Mode is what happens to grants once the feed is stale.
	Mode StaleMode
	// MinBackoff and MaxBackoff bound the wait between reconnects, which
	// doubles from MinBackoff up to MaxBackoff with full jitter. Defaults
	// 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Clock is the time source for staleness. Default time.Now.
	Clock func() time.Time
	// Logger receives connection changes. Default slog.Default().
	Logger *slog.Logger
}

// Feed follows the issuer's revocations into an in-memory set and reports
// uses of limited grants back to it. It implements RevocationChecker,
// Freshness and UseReporter: pass it as Config.Revocations and the verifier
// uses all three. Start it with Run. Until the first snapshot arrives it is
// stale.
type Feed struct {
	cfg         FeedConfig
	set         *RevocationSet
	lastContact atomic.Int64 // unix nanos of the last event; 0 before any
	connected   atomic.Bool
	reconnects  atomic.Uint64

	mu      sync.Mutex
	pending map[string]uint32 // grant ID -> uses not yet reported
	acks    []string          // revocations applied, not yet acknowledged
	stream  string            // ID of the current stream, for acknowledgements
	wake    chan struct{}

	staleDesc, sizeDesc, connDesc, reconDesc *prometheus.Desc
}

// NewFeed returns a Feed for cfg.
func NewFeed(cfg FeedConfig) (*Feed, error) {
	if cfg.Client == nil {
		return nil, errors.New("verifier: feed: Client is required")
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = time.Minute
	}
	if cfg.StaleAfter < 2*DefaultHeartbeat {
		return nil, fmt.Errorf("verifier: feed: StaleAfter %s is less than two of the issuer's heartbeats (2 × %s): a healthy feed would look stale; use at least %s",
			cfg.StaleAfter, DefaultHeartbeat, 2*DefaultHeartbeat)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Feed{
		cfg: cfg, set: NewRevocationSet(), pending: make(map[string]uint32), wake: make(chan struct{}, 1),
		staleDesc: prometheus.NewDesc("jitgrant_verifier_revocations_staleness_seconds",
			"Seconds since the last event from the issuer's revocation feed (-1 before the first).", nil, nil),
		sizeDesc: prometheus.NewDesc("jitgrant_verifier_revocations",
			"Revoked grants held in memory.", nil, nil),
		connDesc: prometheus.NewDesc("jitgrant_verifier_revocation_feed_connected",
			"1 while the revocation stream is open.", nil, nil),
		reconDesc: prometheus.NewDesc("jitgrant_verifier_revocation_feed_reconnects_total",
			"Times the revocation stream was reopened.", nil, nil),
	}, nil
}

// Revoked implements RevocationChecker.
func (f *Feed) Revoked(grantID string) bool { return f.set.Revoked(grantID) }

// RefuseStale implements Freshness: when no event has come for StaleAfter,
// it refuses every grant (FailClosed) or those issued after the last contact
// (KeepIssuedBefore). Before the first snapshot it refuses every grant.
func (f *Feed) RefuseStale(issued time.Time) bool {
	last := f.lastContact.Load()
	if last == 0 {
		return true
	}
	if f.cfg.Clock().UnixNano()-last < int64(f.cfg.StaleAfter) {
		return false
	}
	return f.cfg.Mode == FailClosed || issued.UnixNano() > last
}

// ReportUse implements UseReporter: the use is queued and sent to the issuer
// at once by Run's reporter.
func (f *Feed) ReportUse(grantID string) {
	f.mu.Lock()
	f.pending[grantID]++
	f.mu.Unlock()
	f.poke()
}

// poke wakes the report loop without blocking.
func (f *Feed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Set returns the feed's revocation set.
func (f *Feed) Set() *RevocationSet { return f.set }

// LastContact returns when the last event arrived (zero before any).
func (f *Feed) LastContact() time.Time {
	if n := f.lastContact.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Run follows the feed until ctx ends, reconnecting with backoff and
// jitter, and reports uses. While the issuer is away the last known set
// stays in force.
func (f *Feed) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { f.reportLoop(ctx) })
	defer wg.Wait()
	backoff := f.cfg.MinBackoff
	for {
		err := f.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// A stream that got as far as its snapshot resets the backoff.
		if f.connected.Swap(false) {
			backoff = f.cfg.MinBackoff
		}
		f.cfg.Logger.Warn("verifier: revocation feed lost; the last known set stays in force", "error", err)
		wait := rand.N(backoff) + time.Millisecond
		backoff = min(2*backoff, f.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		f.reconnects.Add(1)
	}
}

// follow reads one stream until it fails.
func (f *Feed) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var nonce [12]byte
	crand.Read(nonce[:])
	id := hex.EncodeToString(nonce[:])
	f.mu.Lock()
	f.stream, f.acks = id, nil
	f.mu.Unlock()
	stream, err := f.cfg.Client.WatchRevocations(ctx, &pb.WatchRevocationsRequest{StreamId: id})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return err
		}
		if hb := ev.GetHeartbeatInterval(); hb != nil && 2*hb.AsDuration() > f.cfg.StaleAfter {
			return fmt.Errorf("verifier: feed: the issuer's heartbeat is %s, and StaleAfter %s is less than two of them: refusing the feed; set StaleAfter to at least %s",
				hb.AsDuration(), f.cfg.StaleAfter, 2*hb.AsDuration())
		}
		if ev.GetSnapshot() {
			set := make(map[string]time.Time, len(ev.GetRevoked()))
			for _, r := range ev.GetRevoked() {
				set[r.GetGrantId()] = r.GetNotAfter().AsTime()
			}
			f.set.Replace(set)
			if !f.connected.Swap(true) {
				f.cfg.Logger.Info("verifier: revocation feed connected", "revoked", len(set))
			}
		} else if len(ev.GetRevoked()) > 0 {
			f.mu.Lock()
			for _, r := range ev.GetRevoked() {
				f.set.Revoke(r.GetGrantId(), r.GetNotAfter().AsTime())
				f.acks = append(f.acks, r.GetGrantId())
			}
			f.mu.Unlock()
			f.poke()
		}
		if f.connected.Load() {
			f.lastContact.Store(f.cfg.Clock().UnixNano())
		}
	}
}

// reportLoop sends queued uses and revocation acknowledgements to the
// issuer: at once when idle, batched under load.
func (f *Feed) reportLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			f.flush(context.WithoutCancel(ctx))
			return
		case <-f.wake:
			f.flush(ctx)
		}
	}
}

func (f *Feed) flush(ctx context.Context) {
	f.mu.Lock()
	batch := f.pending
	f.pending = make(map[string]uint32)
	acks, stream := f.acks, f.stream
	f.acks = nil
	f.mu.Unlock()
	if len(acks) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// A lost acknowledgement only lowers the count RevokeGrant reports.
		if _, err := f.cfg.Client.AckRevocations(cctx, &pb.AckRevocationsRequest{StreamId: stream, GrantIds: acks}); err != nil {
			f.cfg.Logger.Debug("verifier: acknowledging revocations failed", "error", err)
		}
		cancel()
	}
	for id, n := range batch {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := f.cfg.Client.ReportUse(cctx, &pb.ReportUseRequest{GrantId: id, Uses: n})
		cancel()
		if err != nil {
			// The uses were counted here; the issuer's total may lag. Keep
			// them for the next flush unless ctx is over.
			f.cfg.Logger.Warn("verifier: reporting grant uses failed", "grant", id, "uses", n, "error", err)
			if ctx.Err() == nil {
				f.mu.Lock()
				f.pending[id] += n
				f.mu.Unlock()
			}
			continue
		}
		if res.GetExhausted() {
			// The issuer revoked it; the stream will say so too, but do
			// not wait for it.
			f.set.Revoke(id, f.cfg.Clock().Add(24*time.Hour))
		}
	}
}

// Describe implements prometheus.Collector.
func (f *Feed) Describe(ch chan<- *prometheus.Desc) {
	ch <- f.staleDesc
	ch <- f.sizeDesc
	ch <- f.connDesc
	ch <- f.reconDesc
}

// Collect implements prometheus.Collector.
func (f *Feed) Collect(ch chan<- prometheus.Metric) {
	stale := -1.0
	if n := f.lastContact.Load(); n != 0 {
		stale = float64(f.cfg.Clock().UnixNano()-n) / 1e9
	}
	conn := 0.0
	if f.connected.Load() {
		conn = 1
	}
	ch <- prometheus.MustNewConstMetric(f.staleDesc, prometheus.GaugeValue, stale)
	ch <- prometheus.MustNewConstMetric(f.sizeDesc, prometheus.GaugeValue, float64(f.set.Len()))
	ch <- prometheus.MustNewConstMetric(f.connDesc, prometheus.GaugeValue, conn)
	ch <- prometheus.MustNewConstMetric(f.reconDesc, prometheus.CounterValue, float64(f.reconnects.Load()))
}
