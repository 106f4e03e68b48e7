// Command workload is the example client of jitgrant: a program that gets
// its identity from the SPIFFE Workload API, asks jitd for access, waits for
// approval, then calls the example ledger (examples/ledger) with the grant
// SVID that the Workload API delivers next to its identity (hint = grant ID).
//
// Give it an entry in jitd's configuration and a policy rule, for example
//
//	entries:
//	  - id: spiffe://example.org/workload/payments
//	    selectors: ["unix:uid:1001", "unix:path:/usr/local/bin/workload"]
//
//	rules:
//	  - name: payments-refunds
//	    requesters: ["spiffe://example.org/workload/payments"]
//	    scopes: [{method: /bank.v1.Ledger/Refund, resources: ["accounts/*"]}]
//	    approvals: [{count: 1, from: [ops]}]
//	    auto_approve: 'true'   # or leave it to ops: jitctl approve ID
//
// then, with jitd serving its Workload API socket and the ledger running:
//
//	go build -o /usr/local/bin/workload ./examples/workload
//	workload --workload-socket unix:///run/jitgrant/workload.sock \
//	    --issuer 127.0.0.1:8443 \
//	    --ledger 127.0.0.1:9443 --ledger-id spiffe://example.org/service/ledger \
//	    --scope '/bank.v1.Ledger/Refund@accounts/42' --ttl 10m --reason INC-42 \
//	    --call refund --account accounts/42 --amount-cents 1250
//
// Without --scope it asks for the --call method on --account. It prints the
// request's progress and the balance the ledger returns, and exits non-zero
// when the request is denied, times out, is canceled or is not issued within
// --wait-timeout, or when the ledger refuses the call.
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

// scopesFlag collects repeated --scope values.
type scopesFlag []string

func (s *scopesFlag) String() string     { return fmt.Sprint(*s) }
func (s *scopesFlag) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var cfg config
	var scopes scopesFlag
	flag.StringVar(&cfg.workloadSocket, "workload-socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "SPIFFE Workload API address (unix:///path); default $SPIFFE_ENDPOINT_SOCKET")
	flag.StringVar(&cfg.issuer, "issuer", "127.0.0.1:8443", "jitd address")
	flag.StringVar(&cfg.ledger, "ledger", "127.0.0.1:9443", "ledger address")
	flag.StringVar(&cfg.ledgerID, "ledger-id", "", "SPIFFE ID of the ledger (required)")
	flag.Var(&scopes, "scope", "method to ask for, /pkg.Service/Method[@resource] (repeatable); default: the --call method on --account")
	flag.DurationVar(&cfg.ttl, "ttl", 10*time.Minute, "how long the grant should last")
	flag.StringVar(&cfg.reason, "reason", "", "why the access is needed")
	flag.StringVar(&cfg.call, "call", "refund", "ledger method to call: balance, refund or transfer")
	flag.StringVar(&cfg.account, "account", "", "the account to act on (required)")
	flag.StringVar(&cfg.to, "to", "", "with --call transfer: the account credited")
	flag.Int64Var(&cfg.amountCents, "amount-cents", 0, "amount in cents for refund and transfer")
	flag.DurationVar(&cfg.waitTimeout, "wait-timeout", 5*time.Minute, "how long to wait for approval")
	flag.Parse()
	cfg.scopes = scopes
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "workload: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.out = os.Stdout
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}
