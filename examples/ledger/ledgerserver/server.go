package ledgerserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	jitgrantv1 "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
)

// Config configures a ledger server.
type Config struct {
	// Listen is the gRPC address, e.g. "127.0.0.1:8443" (port 0 picks one).
	Listen string
	// MetricsListen, when set, serves the verifier's metrics (and the
	// revocation feed's, if any) at /metrics on this address.
	MetricsListen string
	// SVIDSource supplies the ledger's own SVID. Required.
	SVIDSource x509svid.Source
	// BundleSource supplies the trust bundles callers are verified against.
	// Required.
	BundleSource x509bundle.Source
	// Issuer, when set, is jitd's address: the ledger then follows
	// revocations (and reports uses of limited grants) with a verifier.Feed
	// over a connection made with its own SVID, and refuses every grant while
	// the feed is stale (verifier.FailClosed). Policy must give the ledger
	// the watch_revocations permission.
	Issuer string
	// StaleAfter is the feed's verifier.FeedConfig.StaleAfter. Default 1
	// minute.
	StaleAfter time.Duration
	// Logger receives the ledger's and the verifier's logs. Default
	// slog.Default().
	Logger *slog.Logger
}

// Server is a running ledger.
type Server struct {
	// Ledger is the service, to read balances directly.
	Ledger *Service

	feed    *verifier.Feed
	stop    context.CancelFunc
	grpc    *grpc.Server
	lis     net.Listener
	metrics *http.Server
	mlis    net.Listener
	done    chan error
	closers []func() error
	once    sync.Once
}

// Start builds the verifier (and the revocation feed, with cfg.Issuer) and
// starts serving bank.v1.Ledger on cfg.Listen (and metrics on
// cfg.MetricsListen). Stop it with Stop, or wait for ctx with Wait.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SVIDSource == nil || cfg.BundleSource == nil {
		return nil, errors.New("ledgerserver: SVIDSource and BundleSource are required")
	}
	ctx, stop := context.WithCancel(ctx)
	s := &Server{Ledger: NewService(cfg.Logger), stop: stop, done: make(chan error, 1)}
	var closers []func() error
	defer func() {
		if err != nil {
			stop()
			for _, c := range closers {
				_ = c()
			}
		}
	}()

	var revocations verifier.RevocationChecker
	if cfg.Issuer != "" {
		own, err := cfg.SVIDSource.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("ledgerserver: own SVID: %w", err)
		}
		jitd := spiffeid.RequireFromPath(own.ID.TrustDomain(), "/jitd")
		cc, err := grpc.NewClient(cfg.Issuer, grpc.WithTransportCredentials(
			verifier.ClientCredentials(cfg.SVIDSource, cfg.BundleSource, tlsconfig.AuthorizeID(jitd))))
		if err != nil {
			return nil, fmt.Errorf("ledgerserver: issuer: %w", err)
		}
		closers = append(closers, cc.Close)
		if s.feed, err = verifier.NewFeed(verifier.FeedConfig{
			Client:     jitgrantv1.NewIssuerClient(cc),
			StaleAfter: cfg.StaleAfter,
			Mode:       verifier.FailClosed,
			Logger:     cfg.Logger,
		}); err != nil {
			return nil, err
		}
		feedDone := make(chan struct{})
		go func() { defer close(feedDone); _ = s.feed.Run(ctx) }()
		closers = append(closers, func() error { stop(); <-feedDone; return nil })
		revocations = s.feed
	}
	v, err := verifier.New(verifier.Config{
		SVIDSource:     cfg.SVIDSource,
		BundleSource:   cfg.BundleSource,
		ResourceFields: ResourceFields(),
		Revocations:    revocations,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(v.ServerOptions()...)
	bankv1.RegisterLedgerServer(s.grpc, s.Ledger)

	if cfg.MetricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(v.Collector())
		if s.feed != nil {
			reg.MustRegister(s.feed)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if s.mlis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
		s.metrics = &http.Server{Handler: mux}
		closers = append(closers, s.metrics.Close)
		go s.metrics.Serve(s.mlis)
	}
	if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.closers = closers
	go func() { s.done <- s.grpc.Serve(s.lis) }()
	return s, nil
}

// Feed returns the revocation feed, or nil without Config.Issuer.
func (s *Server) Feed() *verifier.Feed { return s.feed }

// Addr returns the gRPC address the ledger listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// MetricsAddr returns the metrics address, or "" when metrics are off.
func (s *Server) MetricsAddr() string {
	if s.mlis == nil {
		return ""
	}
	return s.mlis.Addr().String()
}

// Wait blocks until ctx ends, then stops the server gracefully; or until
// the server fails, and returns that error.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case err := <-s.done:
		s.Stop()
		return err
	case <-ctx.Done():
		s.grpc.GracefulStop()
		s.Stop()
		return nil
	}
}

// Stop stops the server at once, closing every connection, the metrics
// server and the revocation feed. It may be called more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.grpc.Stop()
		s.stop()
		for _, c := range s.closers {
			_ = c()
		}
	})
}
