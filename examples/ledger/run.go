package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jitgrant/jitgrant/examples/ledger/ledgerserver"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// config is the ledger's command line.
type config struct {
	listen, metricsListen string
	workloadSocket        string
	cert, key, bundle     string
	issuer                string
	staleAfter            time.Duration
	logger                *slog.Logger
	// started, when set, is called with the running server (tests).
	started func(*ledgerserver.Server)
}

// run serves the ledger until ctx ends.
func run(ctx context.Context, cfg config) error {
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	svids, bundles, id, closeSource, err := sources(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeSource()

	srv, err := ledgerserver.Start(ctx, ledgerserver.Config{
		Listen: cfg.listen, MetricsListen: cfg.metricsListen,
		SVIDSource: svids, BundleSource: bundles,
		Issuer: cfg.issuer, StaleAfter: cfg.staleAfter, Logger: cfg.logger,
	})
	if err != nil {
		return err
	}
	cfg.logger.Info("ledger serving", "addr", srv.Addr(), "id", id.String(), "metrics", srv.MetricsAddr(), "issuer", cfg.issuer)
	if cfg.started != nil {
		cfg.started(srv)
	}
	return srv.Wait(ctx)
}

// sources returns the ledger's SVID and bundle sources, from the Workload
// API or from files, its SPIFFE ID and a function that releases them.
func sources(ctx context.Context, cfg config) (x509svid.Source, x509bundle.Source, spiffeid.ID, func(), error) {
	files := cfg.cert != "" || cfg.key != "" || cfg.bundle != ""
	switch {
	case cfg.workloadSocket != "" && files:
		return nil, nil, spiffeid.ID{}, nil, errors.New("give either --workload-socket or --cert/--key/--bundle, not both")
	case cfg.workloadSocket != "":
		src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.workloadSocket)))
		if err != nil {
			return nil, nil, spiffeid.ID{}, nil, fmt.Errorf("workload API: %w", err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			src.Close()
			return nil, nil, spiffeid.ID{}, nil, fmt.Errorf("workload API: %w", err)
		}
		return src, src, svid.ID, func() { src.Close() }, nil
	case cfg.cert == "" || cfg.key == "" || cfg.bundle == "":
		return nil, nil, spiffeid.ID{}, nil, errors.New("give --workload-socket, or all of --cert, --key and --bundle")
	}
	svid, err := x509svid.Load(cfg.cert, cfg.key)
	if err != nil {
		return nil, nil, spiffeid.ID{}, nil, err
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), cfg.bundle)
	if err != nil {
		return nil, nil, spiffeid.ID{}, nil, err
	}
	return svid, bundle, svid.ID, func() {}, nil
}
