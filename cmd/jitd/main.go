// Command jitd is the jitgrant issuer daemon. See internal/jitd.
package main

import (
	"context"
	"os"

	"github.com/jitgrant/jitgrant/internal/jitd"
)

func main() {
	os.Exit(jitd.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
