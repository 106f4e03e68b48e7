package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunCycle runs the cycle scenario briefly against a real temporary
// jitd, in every CSR mode, and checks that cycles completed and the report
// says how they were made. (Throughput is measured by running jitbench,
// not by tests.)
func TestRunCycle(t *testing.T) {
	cycles := regexp.MustCompile(`cycles=(\d+) `)
	for _, mode := range []string{csrPresigned, csrInCycle, csrReused} {
		t.Run(mode, func(t *testing.T) {
			var out bytes.Buffer
			cfg := config{clients: 2, duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond, scenario: "cycle", csr: mode, procs: 1}
			if err := run(context.Background(), cfg, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			report := out.String()
			m := cycles.FindStringSubmatch(report)
			if m == nil {
				t.Fatalf("no cycle count in the report:\n%s", report)
			}
			if n, _ := strconv.Atoi(m[1]); n == 0 {
				t.Errorf("no cycle completed:\n%s", report)
			}
			for _, want := range []string{"csr=" + mode + " ", "cycles/s=", "cpu/cycle=", "machine: bare x509.CreateCertificate"} {
				if !strings.Contains(report, want) {
					t.Errorf("report lacks %q:\n%s", want, report)
				}
			}
			if strings.Contains(report, "ran out") {
				t.Errorf("presigned CSRs ran out at two clients:\n%s", report)
			}
		})
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  config
		want string
	}{
		{"no clients", config{clients: 0, scenario: "cycle", csr: csrPresigned}, "--clients"},
		{"unknown CSR mode", config{clients: 1, scenario: "cycle", csr: "fresh"}, `--csr "fresh"`},
		{"unknown scenario", config{clients: 1, scenario: "soak", csr: csrPresigned}, `--scenario "soak"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.cfg, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
