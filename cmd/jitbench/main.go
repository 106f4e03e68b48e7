// Command jitbench measures the issuer end to end against a real jitd (a
// temporary one it sets up, with durable writes) over real mTLS on loopback.
//
//	-scenario cycle:  N concurrent clients each repeat CreateRequest
//	                  (auto-approved, with a new CSR for the client's key,
//	                  signed before the run unless -csr says otherwise)
//	                  -> ISSUED -> FetchGrant; prints cycles per second,
//	                  latency percentiles, CPU time per cycle and what a
//	                  bare x509.CreateCertificate costs on the machine.
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
	flag.StringVar(&cfg.csr, "csr", csrPresigned, "cycle: presigned (a new CSR per request, signed before the run), in-cycle (a new CSR per request, signed in the cycle) or reused (one CSR per client); each client keeps one P-256 key")
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
