package jitd

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestLimitsDefaults(t *testing.T) {
	tests := []struct {
		name    string
		in      Limits
		want    func(Limits) bool
		wantErr string
	}{
		{name: "zero is the defaults", want: func(l Limits) bool { return l == DefaultLimits() }},
		{name: "set fields are kept", in: Limits{StreamsPerIdentity: 8, HandshakeTimeout: 50 * time.Millisecond},
			want: func(l Limits) bool {
				return l.StreamsPerIdentity == 8 && l.HandshakeTimeout == 50*time.Millisecond && l.MaxConnections == DefaultLimits().MaxConnections
			}},
		{name: "negative count", in: Limits{MaxConnections: -1}, wantErr: "limits.max_connections: -1 is out of range"},
		{name: "huge count", in: Limits{StreamsPerConnection: 1 << 30}, wantErr: "limits.streams_per_connection"},
		{name: "negative duration", in: Limits{IdleTimeout: -time.Second}, wantErr: "limits.idle_timeout: -1s is too short"},
		{name: "tiny keepalive", in: Limits{KeepaliveMinTime: time.Millisecond}, wantErr: "limits.keepalive_min_time: 1ms is too short (at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.want(got) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

// TestLimitsConfigFile: the limits block of the configuration file reaches
// the serve configuration, strictly decoded.
func TestLimitsConfigFile(t *testing.T) {
	for _, tt := range []struct {
		name, file, wantErr string
		want                Limits
	}{
		{name: "set", file: "data_dir: /d\npolicy_settle: 1s\nlimits:\n  streams_per_identity: 4\n  handshake_timeout: 2s\n",
			want: Limits{StreamsPerIdentity: 4, HandshakeTimeout: 2 * time.Second}},
		{name: "unknown key", file: "data_dir: /d\nlimits:\n  streams_per_user: 4\n", wantErr: "field streams_per_user not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jitd.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := serveCommand(io.Discard)
			var fc fileConfig
			err := mergeConfigFile(cmd, path, &fc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || fc.Limits != tt.want || fc.PolicySettle != time.Second {
				t.Fatalf("got %+v, settle %v, %v", fc.Limits, fc.PolicySettle, err)
			}
		})
	}
}

// TestREADMELimits: the README's limits block shows the defaults.
func TestREADMELimits(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if !strings.HasPrefix(b[1], "limits:") {
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader([]byte(b[1])))
		dec.KnownFields(true)
		var fc fileConfig
		if err := dec.Decode(&fc); err != nil {
			t.Fatal(err)
		}
		if fc.Limits != DefaultLimits() {
			t.Errorf("README limits %+v, defaults %+v", fc.Limits, DefaultLimits())
		}
		return
	}
	t.Error("the README shows no limits block")
}
