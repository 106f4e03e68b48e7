package jitd

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer"
)

func TestMergeConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		flags   []string
		check   func(*testing.T, fileConfig)
		wantErr string
	}{
		{
			name: "file fills what flags leave",
			file: "data_dir: /d\nlisten: 127.0.0.1:1\nworkload_socket: /run/w.sock\nentries:\n  - {id: spiffe://t/w, selectors: [\"unix:uid:1\"], ttl: 1h}\n",
			check: func(t *testing.T, fc fileConfig) {
				if fc.DataDir != "/d" || fc.Listen != "127.0.0.1:1" || fc.WorkloadSocket != "/run/w.sock" || len(fc.Entries) != 1 || fc.Entries[0].TTL != "1h" {
					t.Errorf("got %+v", fc)
				}
				if fc.MetricsListen != "127.0.0.1:9090" {
					t.Errorf("metrics_listen %q, want the flag's default", fc.MetricsListen)
				}
			},
		},
		{
			name:  "flags win",
			file:  "data_dir: /d\nlisten: 127.0.0.1:1\n",
			flags: []string{"--listen", "127.0.0.1:2"},
			check: func(t *testing.T, fc fileConfig) {
				if fc.Listen != "127.0.0.1:2" {
					t.Errorf("listen %q, want the flag's", fc.Listen)
				}
			},
		},
		{
			name: "empty metrics_listen turns the endpoint off",
			file: "data_dir: /d\nmetrics_listen: \"\"\n",
			check: func(t *testing.T, fc fileConfig) {
				if fc.MetricsListen != "" {
					t.Errorf("metrics_listen %q, want off", fc.MetricsListen)
				}
			},
		},
		{
			name: "expiring_lead from the file, the flag's default without it",
			file: "data_dir: /d\n",
			check: func(t *testing.T, fc fileConfig) {
				if fc.ExpiringLead != issuer.DefaultExpiringLead {
					t.Errorf("expiring_lead %v, want the default %v", fc.ExpiringLead, issuer.DefaultExpiringLead)
				}
			},
		},
		{
			name: "expiring_lead in the file",
			file: "data_dir: /d\nexpiring_lead: 2m\n",
			check: func(t *testing.T, fc fileConfig) {
				if fc.ExpiringLead != 2*time.Minute {
					t.Errorf("expiring_lead %v, want 2m", fc.ExpiringLead)
				}
			},
		},
		{
			name: "expiring_lead 0 in the file turns the notice off",
			file: "data_dir: /d\nexpiring_lead: 0s\n",
			check: func(t *testing.T, fc fileConfig) {
				if fc.ExpiringLead != 0 {
					t.Errorf("expiring_lead %v, want 0 (off)", fc.ExpiringLead)
				}
			},
		},
		{
			name:  "--expiring-lead wins",
			file:  "data_dir: /d\nexpiring_lead: 2m\n",
			flags: []string{"--expiring-lead", "90s"},
			check: func(t *testing.T, fc fileConfig) {
				if fc.ExpiringLead != 90*time.Second {
					t.Errorf("expiring_lead %v, want the flag's 1m30s", fc.ExpiringLead)
				}
			},
		},
		{name: "unknown key", file: "data_dir: /d\nlisen: x\n", wantErr: "field lisen not found"},
		{name: "not YAML", file: "data_dir: [\n", wantErr: "--config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jitd.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := serveCommand(io.Discard)
			if err := cmd.ParseFlags(tt.flags); err != nil {
				t.Fatal(err)
			}
			var fc fileConfig
			fc.Listen, _ = cmd.Flags().GetString("listen")
			fc.MetricsListen, _ = cmd.Flags().GetString("metrics-listen")
			fc.ExpiringLead, _ = cmd.Flags().GetDuration("expiring-lead")
			err := mergeConfigFile(cmd, path, &fc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, fc)
		})
	}
}

// TestServeRefusesNegativeExpiringLead: a negative lead time is refused by
// name before anything starts.
func TestServeRefusesNegativeExpiringLead(t *testing.T) {
	var stderr strings.Builder
	code := Main(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--expiring-lead", "-1m"}, io.Discard, &stderr)
	if want := "--expiring-lead -1m0s: must not be negative"; code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
}
