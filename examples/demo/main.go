// Command demo runs the whole jitgrant story on one machine, in one command:
//
//	go run ./examples/demo
//
// It starts jitd (in a temporary data directory, with a sample policy that
// needs one SRE and one security approval for refunds and approves short
// balance checks automatically), the example ledger service protected by the
// verifier, and the payments workload, which gets its identity from jitd's
// SPIFFE Workload API. It enrolls two approvers and narrates each step: an
// automatic grant used, a refund approved by two people and used, a transfer
// refused, a revocation, a one-shot grant, an expired grant refused on an
// open connection, and the audit log exported, verified, and caught when
// tampered with.
//
// It exits 0 only when every step behaved as narrated, and removes its
// temporary directory (unless --keep).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var opts options
	noColor := flag.Bool("no-color", os.Getenv("NO_COLOR") != "", "plain output even on a terminal (also $NO_COLOR)")
	flag.BoolVar(&opts.verbose, "v", false, "also print jitd's and the ledger's logs")
	flag.BoolVar(&opts.keep, "keep", false, "keep the temporary directory (data dir, identities, audit export)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	opts.out, opts.logOut = os.Stdout, os.Stderr
	opts.color = !*noColor && isTerminal(os.Stdout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
		os.Exit(1)
	}
}

// isTerminal reports whether f is a character device, as a terminal is.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
