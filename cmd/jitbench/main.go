// Command jitbench measures the issuer end to end against a real jitd (a
// temporary one it sets up, with durable writes) over real mTLS on loopback.
//
//	-scenario cycle:  N concurrent clients each repeat CreateRequest
//	                  (auto-approved, with a new CSR for the client's key)
//	                  -> ISSUED -> FetchGrant; prints cycles per second,
//	                  latency percentiles and CPU time per cycle.
//	-scenario revoke: verifiers follow the revocation feed; for each of M
//	                  grants, the time from RevokeGrant returning until every
//	                  verifier refuses the grant; prints p50/p99.
//	-scenario push:   a workload (this process, attested by its uid) holds a
//	                  SPIFFE Workload API stream; for each of M grants, the
//	                  time from ApproveRequest returning to the approver until
//	                  the grant SVID arrives on the stream; prints p50/p99.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"

	"github.com/jitgrant/jitgrant/internal/jitd"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.clients, "clients", 32, "concurrent clients")
	flag.DurationVar(&cfg.duration, "duration", 10*1e9, "how long to run")
	flag.DurationVar(&cfg.warmup, "warmup", 2*1e9, "warm-up before measuring")
	flag.StringVar(&cfg.scenario, "scenario", "cycle", "what to measure: cycle (CreateRequest -> ISSUED -> FetchGrant), revoke (RevokeGrant returns -> every verifier refuses) or push (ApproveRequest returns -> grant SVID on the workload's stream)")
	flag.IntVar(&cfg.verifiers, "verifiers", 10, "revoke: verifiers following the revocation feed")
	flag.IntVar(&cfg.revocations, "revocations", 1000, "revoke: revocations to measure")
	flag.IntVar(&cfg.grants, "grants", 10000, "push: grants to measure")
	flag.BoolVar(&cfg.async, "async-writes", false, "turn off fsync in the temporary jitd (not durable; for comparison only)")
	flag.BoolVar(&cfg.reuseCSR, "reuse-csr", false, "cycle: send one CSR per client in every request instead of signing a new one per request (each client keeps one key either way; for comparison with figures measured that way)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address while running")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { fmt.Fprintln(os.Stderr, http.ListenAndServe(*pprofAddr, nil)) }()
	}
	// jitbench hosts the issuer, so its process is tuned as jitd serve's is
	// (set GOMAXPROCS to measure otherwise).
	cfg.procs = jitd.SpareProc(os.Getenv)
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "jitbench:", err)
		os.Exit(1)
	}
}
