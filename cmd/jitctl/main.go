// Command jitctl is the jitgrant command line. See internal/jitctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitgrant/jitgrant/internal/jitctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := jitctl.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
