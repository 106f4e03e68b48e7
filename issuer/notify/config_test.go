package notify_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer/notify"
)

// secretFile writes a secret file and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewValidation(t *testing.T) {
	key := secretFile(t, "0123456789abcdef0123456789abcdef\n")
	ok := notify.Endpoint{URL: "https://hooks.example.com/jitgrant", SecretFile: key}
	with := func(set func(e *notify.Endpoint)) notify.Endpoint {
		e := ok
		set(&e)
		return e
	}
	noAudit := func(context.Context, audit.Record) error { return nil }
	tests := []struct {
		name    string
		cfg     notify.Config
		wantErr []string // nil: valid
	}{
		{name: "no endpoints", cfg: notify.Config{}},
		{name: "good", cfg: notify.Config{Endpoints: []notify.Endpoint{ok, with(func(e *notify.Endpoint) {
			e.Name, e.URL, e.Events, e.Timeout = "local", "http://127.0.0.1:8080/hook", []string{"issued", "break_glass"}, time.Second
		})}}},
		{name: "http to localhost", cfg: notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "http://localhost/x" })}}},
		{name: "http to ::1", cfg: notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "http://[::1]:9/x" })}}},
		{
			name:    "missing url",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{ok, with(func(e *notify.Endpoint) { e.URL = "" })}},
			wantErr: []string{"notify: endpoints[1].url: missing URL"},
		},
		{
			name:    "ftp scheme",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "ftp://files.example.com/x" })}},
			wantErr: []string{`notify: endpoints[0].url: scheme "ftp": want https`},
		},
		{
			name:    "relative url",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "/hook" })}},
			wantErr: []string{"endpoints[0].url: scheme"},
		},
		{
			name:    "no host",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "https:///hook" })}},
			wantErr: []string{"endpoints[0].url: no host"},
		},
		{
			name:    "plain http to a remote host",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "http://hooks.example.com/x?token=SECRET" })}},
			wantErr: []string{"endpoints[0].url: plain http to hooks.example.com: use https"},
		},
		{
			name:    "unparsable url not echoed",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.URL = "https://hooks.example.com/%zzSECRET" })}},
			wantErr: []string{"endpoints[0].url: not a valid URL"},
		},
		{
			name:    "missing secret file",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.SecretFile = "" })}},
			wantErr: []string{"endpoints[0].secret_file: missing: a webhook needs a secret"},
		},
		{
			name:    "secret file does not exist",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.SecretFile = filepath.Join(t.TempDir(), "nope") })}},
			wantErr: []string{"endpoints[0].secret_file: open ", "no such file"},
		},
		{
			name:    "unreadable secret",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.SecretFile = t.TempDir() })}},
			wantErr: []string{"endpoints[0].secret_file: read ", "is a directory"},
		},
		{
			name:    "empty secret",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.SecretFile = secretFile(t, "\n") })}},
			wantErr: []string{"endpoints[0].secret_file: ", "webhook.key is empty"},
		},
		{
			name:    "short secret",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.SecretFile = secretFile(t, "hunter2") })}},
			wantErr: []string{"endpoints[0].secret_file: ", "holds 7 bytes, at least 16"},
		},
		{
			name:    "unknown event",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.Events = []string{"issued", "approved"} })}},
			wantErr: []string{`notify: endpoints[0].events[1]: unknown event "approved" (want one of created, decided, issued, revoked, expiring, expired, break_glass, reviewed, extension_requested, extended, extension_denied)`},
		},
		{
			name:    "negative timeout",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.Timeout = -time.Second })}},
			wantErr: []string{"endpoints[0].timeout: -1s is negative"},
		},
		{
			name:    "bad name",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{with(func(e *notify.Endpoint) { e.Name = "Slack Sec" })}},
			wantErr: []string{`endpoints[0].name: "Slack Sec" must be`},
		},
		{
			name:    "duplicate name",
			cfg:     notify.Config{Endpoints: []notify.Endpoint{ok, with(func(e *notify.Endpoint) { e.Name = "0" })}},
			wantErr: []string{`endpoints[1].name: "0" is also the name of endpoints[0]`},
		},
		{
			name:    "negative settings",
			cfg:     notify.Config{MaxAttempts: -1, Backoff: -1, QueueSize: -1},
			wantErr: []string{"notify: max_attempts: -1 is negative", "notify: backoff: -1 is negative", "notify: queue_size: -1 is negative"},
		},
		{
			name:    "audit without actor",
			cfg:     notify.Config{Audit: noAudit},
			wantErr: []string{`notify: actor: "" is not a SPIFFE ID`},
		},
		{
			name: "every problem at once",
			cfg: notify.Config{Endpoints: []notify.Endpoint{
				{URL: "ftp://x", SecretFile: ""},
				with(func(e *notify.Endpoint) { e.Events = []string{"nope"} }),
			}},
			wantErr: []string{"endpoints[0].url", "endpoints[0].secret_file", "endpoints[1].events[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := notify.New(tt.cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := n.Close(context.Background()); err != nil {
					t.Errorf("Close: %v", err)
				}
				return
			}
			if err == nil {
				n.Close(context.Background())
				t.Fatalf("New accepted the config, want an error with %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}
