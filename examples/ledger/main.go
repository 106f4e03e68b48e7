// Command ledger runs the example service bank.v1.Ledger (balances in
// memory, accounts start at zero) protected by a jitgrant verifier: every
// call needs a grant, and the grant of Transfer and Refund must cover the
// request's account field (for example accounts/42). The service itself is
// package ledgerserver, which other examples and tests start in-process.
//
// With its SVID and trust bundle from a SPIFFE Workload API, such as the one
// jitd serves, given an entry for the ledger in jitd's configuration
//
//	entries:
//	  - id: spiffe://example.org/service/ledger
//	    selectors: ["unix:uid:1002", "unix:path:/usr/local/bin/ledger"]
//
// and a policy that lets it follow revocations
//
//	permissions:
//	  watch_revocations: ["spiffe://example.org/service/*"]
//
// run
//
//	go build -o /usr/local/bin/ledger ./examples/ledger
//	ledger --listen 127.0.0.1:9443 \
//	    --workload-socket unix:///run/jitgrant/workload.sock \
//	    --issuer 127.0.0.1:8443 --metrics-listen 127.0.0.1:9091
//
// Or with its SVID from files, for example written by jitd enroll (offline,
// while jitd serve is stopped; the bundle's trust domain is the SVID's):
//
//	jitd enroll --data-dir ./data --id spiffe://example.org/service/ledger --out ./ledger-id
//	go run ./examples/ledger --listen 127.0.0.1:9443 \
//	    --cert ledger-id/svid.pem --key ledger-id/svid.key --bundle ledger-id/bundle.pem
//
// With --issuer the ledger follows revocations from jitd (and reports uses
// of limited grants) over a connection made with its own SVID, and refuses
// every grant while that feed has had no contact for --stale-after
// (verifier.FailClosed), including until it first reaches jitd. Without it,
// grants are good until they expire. --metrics-listen serves the verifier's
// decision counters (and the feed's metrics) at /metrics.
//
// examples/workload is the client that asks jitd for a grant and calls it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:9443", "gRPC address to serve bank.v1.Ledger on")
	flag.StringVar(&cfg.metricsListen, "metrics-listen", "", "address to serve the verifier's /metrics on (off when empty)")
	flag.StringVar(&cfg.workloadSocket, "workload-socket", "", "SPIFFE Workload API address (unix:///path) for the ledger's SVID and bundle")
	flag.StringVar(&cfg.cert, "cert", "", "the ledger's SVID certificate chain (PEM), instead of --workload-socket")
	flag.StringVar(&cfg.key, "key", "", "the SVID's private key (PEM)")
	flag.StringVar(&cfg.bundle, "bundle", "", "the trust bundle (PEM) of the SVID's trust domain")
	flag.StringVar(&cfg.issuer, "issuer", "", "jitd address to follow revocations from (off when empty)")
	flag.DurationVar(&cfg.staleAfter, "stale-after", time.Minute, "with --issuer: refuse every grant after this long without contact")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ledger: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(1)
	}
}
