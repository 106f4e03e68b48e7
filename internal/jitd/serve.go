package jitd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/inputs"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/issuer/wlapi"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// ServeConfig configures a running jitd.
type ServeConfig struct {
	// Dir is the data directory made by Init. Required.
	Dir DataDir
	// Listen is the issuer API's TCP address. Default 127.0.0.1:8443.
	Listen string
	// PolicyPath is the policy file. Default the data directory's.
	PolicyPath string
	// MetricsListen is the HTTP address of /metrics, /healthz and /readyz;
	// "" serves none.
	MetricsListen string
	// Passphrase decrypts the CA key when it is encrypted.
	Passphrase []byte
	// MaxTTLCap raises the policy's global TTL cap (default 1h).
	MaxTTLCap time.Duration
	// MinTTL is the shortest grant a request may ask for. Default
	// issuer.DefaultMinTTL (30s); demos and tests with short grants lower it.
	MinTTL time.Duration
	// PolicyPoll is how often the policy file is checked. Default 2s.
	PolicyPoll time.Duration
	// PolicySettle is how long a changed policy file must stay unchanged
	// before it is applied (policy.WatcherConfig.Settle). Default
	// policy.DefaultSettle.
	PolicySettle time.Duration
	// Limits bound connections, streams and handshakes; zero fields take
	// DefaultLimits.
	Limits Limits
	// ExpiringLead is how long before a grant's end its expiring notice
	// (webhook event expiring) is sent (issuer.Config.ExpiringLead).
	// Default issuer.DefaultExpiringLead (5m); negative sends none.
	ExpiringLead time.Duration
	// SweepEvery is how often timeouts, scheduled starts and expiries are
	// processed. Default 1s.
	SweepEvery time.Duration
	// Clock is the time source. Default time.Now.
	Clock func() time.Time
	// Logger receives jitd's logs. Default slog.Default().
	Logger *slog.Logger
	// AsyncWrites turns off fsync on commit (benchmarks of the rest only).
	AsyncWrites bool
	// WorkloadSocket is the path of the SPIFFE Workload API's Unix socket;
	// "" serves none.
	WorkloadSocket string
	// Entries are the registration entries of the Workload API.
	Entries []attest.EntryConfig
	// Webhooks are the notification endpoints; none sends nothing.
	Webhooks []notify.Endpoint
	// TicketCheckers are the ticket checkers rules may name (ticket_check).
	TicketCheckers []inputs.Endpoint
	// OnCall, if set, is where the `oncall` input of policy conditions
	// comes from.
	OnCall *inputs.OnCallSource
	// WebhookClient, if set, sends the webhooks (tests). Default
	// notify's own.
	WebhookClient *http.Client
	// WebhookBackoff, if set, is the delay before a webhook's first retry
	// (tests). Default notify's.
	WebhookBackoff time.Duration
	// DiskReserve is the free space, in bytes, the database's file system
	// must keep for writes to be accepted (kv.Config.DiskReserve). Zero
	// selects kv.DefaultDiskReserve.
	DiskReserve int64
}

// Server is a running jitd.
type Server struct {
	cfg      ServeConfig
	id       spiffeid.ID
	db       *kv.DB
	log      *audit.Log
	ca       *ca.CA // closed last: a CA key in a PKCS#11 token holds a session
	issuer   *issuer.Issuer
	grpc     *grpc.Server
	health   *health.Server
	watcher  *policy.Watcher
	notifier *notify.Notifier
	wl       *wlapi.Server
	wlLis    net.Listener
	lis      net.Listener
	http     *http.Server
	httpLis  net.Listener
	limits   *limiter
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	// unaudited is the policy load the full disk kept from the log.
	unaudited *audit.Record
	// jwtKey is the JWT-SVID key's PKCS#11 token; nil for jwt.key.
	jwtKey io.Closer
}

// ServerID returns jitd's own SPIFFE ID in td: clients authorize it.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID { return spiffeid.RequireFromPath(td, "/jitd") }

// streamWorkers is how many goroutines the API server keeps for running
// request handlers (grpc.NumStreamWorkers; see Start).
const streamWorkers = 256

// Start opens the data directory and starts serving. The caller must call
// Stop.
func Start(ctx context.Context, cfg ServeConfig) (_ *Server, err error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8443"
	}
	if cfg.PolicyPath == "" {
		cfg.PolicyPath = cfg.Dir.Policy()
	}
	if cfg.PolicyPoll <= 0 {
		cfg.PolicyPoll = 2 * time.Second
	}
	if cfg.PolicySettle < 0 {
		return nil, fmt.Errorf("jitd: policy_settle %v is negative", cfg.PolicySettle)
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	_, td, err := cfg.Dir.readMeta()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, id: ServerID(td)}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	c, err := cfg.Dir.loadCA(ctx, td, cfg.Passphrase, cfg.Clock)
	if err != nil {
		return nil, err
	}
	s.ca = c
	signer, err := audit.ReadSigner(cfg.Dir.path(fileAuditKey))
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	if s.db, err = kv.Open(cfg.Dir.path(dirDB), kv.Config{Logger: cfg.Logger, AsyncWrites: cfg.AsyncWrites, MemTableSize: 16 << 20, DiskReserve: cfg.DiskReserve}); err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	s.log, err = audit.New(s.db.DB, audit.Config{
		Signer: signer, Origin: "jitgrant audit " + td.Name(), Actor: s.id.String(),
		Now: cfg.Clock, Logger: cfg.Logger, WriteCheck: s.db.CheckWrite,
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	store := issuer.NewBadgerStore(s.db.DB, s.log)

	policyMetrics := policy.NewCollector()
	policies, watcher, err := s.loadPolicy(ctx, store, policyMetrics)
	if err != nil {
		return nil, err
	}
	s.watcher = watcher
	if s.limits, err = s.newLimiter(policies); err != nil {
		return nil, err
	}
	s.notifier, err = notify.New(notify.Config{
		Endpoints: cfg.Webhooks, Client: cfg.WebhookClient, Backoff: cfg.WebhookBackoff, Clock: cfg.Clock, Logger: cfg.Logger,
		Audit: store.Audit, Actor: s.id.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: webhooks: %w", err)
	}
	policyInputs, err := inputs.New(inputs.Config{
		TicketCheckers: cfg.TicketCheckers, OnCall: cfg.OnCall, Clock: cfg.Clock, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: policy inputs: %w", err)
	}
	s.issuer, err = issuer.New(issuer.Config{
		CA: c, Store: store, Policies: policies, ID: s.id, Clock: cfg.Clock, Logger: cfg.Logger,
		OnChange: s.notifier.OnChange, MinTTL: cfg.MinTTL, ExpiringLead: cfg.ExpiringLead, Inputs: policyInputs,
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	if cfg.WorkloadSocket != "" {
		if err := s.startWorkloadAPI(ctx, c, td, store); err != nil {
			return nil, err
		}
	}
	svids := newRotatingSVID(c, s.id, 24*time.Hour, cfg.Clock)
	v, err := verifier.New(verifier.Config{
		SVIDSource: svids, BundleSource: c.Bundle(), PublicMethods: issuer.PublicMethods(),
		IdentityMethods: issuer.IdentityMethods(), Clock: cfg.Clock, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	// Stream workers: a request's handler runs on a reused goroutine whose
	// stack has already grown to what signing needs, instead of a new one
	// that grows (and copies) its stack on every request: 4.5 % of
	// jitbench's CPU before, 0.7 % after. A request that finds every worker
	// busy gets its own goroutine, as without workers; 256 covers the
	// requests in flight at jitbench's 64 to 128 clients.
	apiOpts := append(append(v.ServerOptions(), issuer.DecodeOptions()...), s.limits.apiOptions()...)
	s.grpc = grpc.NewServer(append(apiOpts, grpc.NumStreamWorkers(streamWorkers))...)
	pb.RegisterIssuerServer(s.grpc, issuer.NewService(s.issuer, s.log))
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("jitd: API listener: %w", err)
	}
	if s.lis, err = s.limits.listen(s, s.lis, "api", s.limits.cfg.MaxConnections); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		v.Collector(), s.issuer.Collector(), audit.NewCollector(s.log), policyMetrics, policyInputs.Collector(), s.notifier.Collector(), s.db.Collector(), s.limits.metrics)
	if s.wl != nil {
		reg.MustRegister(s.wl.Collector())
	}
	if cfg.MetricsListen != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("jitd: metrics listener: %w", err)
		}
		if s.httpLis, err = s.limits.listen(s, s.httpLis, "metrics", s.limits.cfg.MetricsMaxConnections); err != nil {
			return nil, err
		}
		s.http = &http.Server{Handler: s.httpHandler(reg), ReadHeaderTimeout: s.limits.cfg.HandshakeTimeout,
			ReadTimeout: 2 * s.limits.cfg.HandshakeTimeout, IdleTimeout: s.limits.cfg.IdleTimeout}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.goRun(func() { _ = s.grpc.Serve(s.lis) })
	if s.http != nil {
		s.goRun(func() { _ = s.http.Serve(s.httpLis) })
	}
	s.goRun(func() { _ = watcher.Run(runCtx) })
	if rec := s.unaudited; rec != nil {
		s.goRun(func() { s.auditWhenWritable(runCtx, store, *rec) })
	}
	ticker := time.NewTicker(cfg.SweepEvery)
	s.goRun(func() { defer ticker.Stop(); _ = s.issuer.Run(runCtx, ticker.C) })
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.Issuer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	cfg.Logger.Info("jitd: serving", "trust_domain", td.Name(), "api", s.lis.Addr().String(),
		"metrics", cfg.MetricsListen, "policy", cfg.PolicyPath, "id", s.id.String(), "workload_socket", cfg.WorkloadSocket)
	return s, nil
}

func (s *Server) goRun(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// loadPolicy loads the policy file (an invalid one at start is an error),
// audits every load and returns the store and its watcher.
func (s *Server) loadPolicy(ctx context.Context, store issuer.Store, metrics *policy.Collector) (*policy.Store, *policy.Watcher, error) {
	opts := policy.Options{MaxTTLCap: s.cfg.MaxTTLCap}
	p, err := policy.Load(s.cfg.PolicyPath, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("jitd: %w", err)
	}
	ps := policy.NewStore(p)
	switch err := store.Audit(ctx, policyRecord(s.id, s.cfg.PolicyPath, p.Hash(), nil)); {
	case errors.Is(err, audit.ErrRefused):
		// The disk is full: start anyway, serving reads and refusing every
		// write (none can commit unaudited), rather than stay down; the
		// load is audited once writes are accepted again.
		s.cfg.Logger.Error("jitd: the policy load is not audited yet: writes are refused", "error", err)
		rec := policyRecord(s.id, s.cfg.PolicyPath, p.Hash(), nil)
		s.unaudited = &rec
	case err != nil:
		return nil, nil, fmt.Errorf("jitd: auditing the policy load: %w", err)
	}
	w, err := policy.NewWatcher(policy.WatcherConfig{
		Path: s.cfg.PolicyPath, Options: opts, Store: ps, Interval: s.cfg.PolicyPoll, Settle: s.cfg.PolicySettle,
		Now: s.cfg.Clock, Logger: s.cfg.Logger, Collector: metrics,
		OnLoad: func(ev policy.LoadEvent) {
			rec := policyRecord(s.id, ev.Path, ev.Hash, ev.Err)
			if len(ev.Removed) > 0 {
				// What the file removed (checksummed) or would have
				// removed (refused), in the audit log as well.
				rec.Details["removed"] = fmt.Sprint(len(ev.Removed))
			}
			if err := store.Audit(context.Background(), rec); err != nil {
				s.cfg.Logger.Error("jitd: auditing a policy load failed", "error", err)
			}
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("jitd: %w", err)
	}
	return ps, w, nil
}

// auditWhenWritable appends rec once the store accepts writes again,
// trying every SweepEvery, until ctx ends.
func (s *Server) auditWhenWritable(ctx context.Context, store issuer.Store, rec audit.Record) {
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch err := store.Audit(ctx, rec); {
		case err == nil:
			s.cfg.Logger.Info("jitd: the policy load is audited")
			return
		case !errors.Is(err, audit.ErrRefused):
			s.cfg.Logger.Error("jitd: auditing the policy load failed", "error", err)
			return
		}
	}
}

func policyRecord(id spiffeid.ID, path, hash string, loadErr error) audit.Record {
	d := map[string]string{"path": path, "sha256": hash, "ok": "true"}
	if loadErr != nil {
		d["ok"], d["error"] = "false", loadErr.Error()
	}
	return audit.Record{Actor: id.String(), Action: audit.ActionPolicyLoaded, Details: d}
}

func (s *Server) httpHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := s.log.Latest(); err != nil && !errors.Is(err, audit.ErrNotFound) {
			http.Error(w, "audit log: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := s.db.Writable(); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// ReloadPolicy reads the policy file now (jitd serve does it on SIGHUP). A
// file that does not parse leaves the policy in force; the event says why.
func (s *Server) ReloadPolicy() policy.LoadEvent { return s.watcher.ReloadNow() }

// Addr returns the issuer API's address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// MetricsAddr returns the metrics endpoint's address, "" when none.
func (s *Server) MetricsAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// Issuer returns the running issuer (tests sweep through it).
func (s *Server) Issuer() *issuer.Issuer { return s.issuer }

// Reopen returns a channel closed when jitd, started read-only on a full
// disk, can open its database read-write: jitd serve then restarts the
// server (Stop, Start) in the same process.
func (s *Server) Reopen() <-chan struct{} { return s.db.Reopen() }

// AuditLog returns the running audit log.
func (s *Server) AuditLog() *audit.Log { return s.log }

// Stop shuts down: streams are ended, in-flight calls finish (for up to ten
// seconds), a final checkpoint is signed and the database is closed.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.health != nil {
			s.health.Shutdown()
		}
		if s.issuer != nil {
			s.issuer.Close() // ends watch streams, so GracefulStop need not wait for them
		}
		if s.wl != nil {
			s.wl.GracefulStop() // ends its streams and removes the socket
		}
		if s.grpc != nil {
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				s.grpc.Stop()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		}
		if s.notifier != nil {
			// Deliveries still queued get a few seconds; what is given up
			// on is audited while the log is still open.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.notifier.Close(ctx)
			cancel()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		var errs []error
		if s.log != nil {
			errs = append(errs, s.log.Close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		if s.jwtKey != nil {
			errs = append(errs, s.jwtKey.Close())
		}
		if s.ca != nil {
			errs = append(errs, s.ca.Close())
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
