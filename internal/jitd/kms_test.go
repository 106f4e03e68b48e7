package jitd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

// TestInitKMSFailures: jitd init --kms fails closed, naming what is wrong,
// and leaves neither files nor a key in the token behind.
func TestInitKMSFailures(t *testing.T) {
	tok := softhsmtest.Require(t)
	tests := []struct {
		name    string
		args    func(root string) []string
		wantErr []string
		// gone is a key URI that must not be in the token afterwards.
		gone string
	}{
		{
			name: "wrong PIN",
			args: func(string) []string {
				return []string{"--kms", strings.Replace(tok.URI(""), "pin-source="+tok.PINFile, "pin-value=0000", 1)}
			},
			wantErr: []string{`jitd: init: --kms: ca: opening PKCS#11 token "jitgrant"`, "wrong PIN"},
		},
		{
			name: "missing token",
			args: func(string) []string {
				return []string{"--kms", strings.Replace(tok.URI(""), "token=jitgrant", "token=absent", 1)}
			},
			wantErr: []string{`PKCS#11 token "absent"`, "no such token"},
		},
		{
			name: "module path that does not exist",
			args: func(string) []string {
				return []string{"--kms", strings.Replace(tok.URI(""), tok.Module, "/opt/none/libp11.so", 1)}
			},
			wantErr: []string{"PKCS#11 module-path /opt/none/libp11.so", "no such file or directory"},
		},
		{
			name:    "cloud KMS",
			args:    func(string) []string { return []string{"--kms", "awskms:key-id=1234"} },
			wantErr: []string{`jitd: init: --kms: ca: key URI scheme "awskms" is not supported: only pkcs11: URIs`},
		},
		{
			name:    "ed25519",
			args:    func(string) []string { return []string{"--kms", tok.URI(""), "--key-type", "ed25519"} },
			wantErr: []string{"key type ed25519 cannot be generated in a PKCS#11 token: use ec-p256 or ec-p384"},
		},
		{
			name: "with a passphrase",
			args: func(root string) []string {
				pass := filepath.Join(root, "pass")
				writeTestFile(t, pass, "secret\n", 0o600)
				return []string{"--kms", tok.URI(""), "--ca-passphrase-file", pass}
			},
			wantErr: []string{"--kms and --ca-passphrase-file both given"},
		},
		{
			name: "a late write fails: the token key is deleted",
			args: func(root string) []string {
				// audit.pub points nowhere: writing it fails after the CA
				// key is in the token.
				if err := os.Mkdir(filepath.Join(root, "data"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(root, "nowhere", "audit.pub"), filepath.Join(root, "data", fileAuditPub)); err != nil {
					t.Fatal(err)
				}
				return []string{"--kms", tok.URI("id=c0de;object=jitd-late-failure")}
			},
			wantErr: []string{"audit.pub"},
			gone:    tok.URI("id=c0de;object=jitd-late-failure"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "data")
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"init", "--data-dir", dir, "--trust-domain", "example.org"}, tt.args(root)...), &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, stderr.String())
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q\nlacks %q", stderr.String(), w)
				}
			}
			for _, name := range []string{fileCACert, fileCAKey, fileMeta} {
				if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", name, err)
				}
			}
			if tt.gone != "" {
				// The id and object are free again.
				c, err := ca.GenerateKMS(context.Background(), ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")}, tt.gone)
				if err != nil {
					t.Fatalf("the key of the failed init is still in the token: %v", err)
				}
				if err := c.DeleteKey(); err != nil {
					t.Error(err)
				}
				c.Close()
			}
		})
	}
}

// TestServeKMSFailures: a jitd whose CA key is in a token refuses to start,
// naming the cause and jitd.yaml's ca_key, when the token cannot give it.
func TestServeKMSFailures(t *testing.T) {
	tok := softhsmtest.Require(t)
	root := t.TempDir()
	d := DataDir(filepath.Join(root, "data"))
	pinFile := filepath.Join(root, "pin")
	writeTestFile(t, pinFile, softhsmtest.PIN+"\n", 0o600)
	keyURI := strings.Replace(tok.URI("id=c0df;object=jitd-serve"), tok.PINFile, pinFile, 1)
	if err := Init(InitConfig{Dir: d, TrustDomain: "example.org", KMS: keyURI}); err != nil {
		t.Fatalf("Init --kms: %v", err)
	}
	m, _, err := d.readMeta()
	if err != nil || m.CAKey != keyURI {
		t.Fatalf("jitd.yaml ca_key %q (%v), want %q", m.CAKey, err, keyURI)
	}
	if _, err := os.Stat(d.path(fileCAKey)); !os.IsNotExist(err) {
		t.Fatalf("ca.key exists: %v", err)
	}
	start := func() error {
		s, err := Start(context.Background(), ServeConfig{Dir: d, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil {
			s.Stop()
		}
		return err
	}
	// The failures come first: PKCS#11 login is per process and token, so
	// while a CA of this process holds the token open (Server.Stop does
	// not close it) the token accepts any PIN.
	tests := []struct {
		name    string
		pin     string // written to the PIN file; "" removes it
		wantErr string
	}{
		{name: "wrong PIN", pin: "9999\n", wantErr: "wrong PIN"},
		{name: "PIN file gone", pin: "", wantErr: `reading the PIN of PKCS#11 token "jitgrant": pin-source: open ` + pinFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(pinFile)
			if tt.pin != "" {
				writeTestFile(t, pinFile, tt.pin, 0o600)
			}
			err := start()
			if err == nil {
				t.Fatal("Start: no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "(ca_key in "+d.path(fileMeta)+")") {
				t.Errorf("Start: %v\nwant %q and the ca_key it came from", err, tt.wantErr)
			}
		})
	}
	writeTestFile(t, pinFile, softhsmtest.PIN+"\n", 0o600)
	if err := start(); err != nil {
		t.Fatalf("Start with the token key: %v", err)
	}
}

// TestInitKMSPinValue: a PIN given in the URI works, with a warning, and
// jitd.yaml, which then holds it, is readable by its owner only.
func TestInitKMSPinValue(t *testing.T) {
	tok := softhsmtest.Require(t)
	root := t.TempDir()
	d := DataDir(filepath.Join(root, "data"))
	var stdout, stderr bytes.Buffer
	keyURI := strings.Replace(tok.URI("id=c0e0;object=jitd-pin-value"), "pin-source="+tok.PINFile, "pin-value="+softhsmtest.PIN, 1)
	if code := Main(context.Background(), []string{"init", "--data-dir", string(d), "--trust-domain", "example.org", "--kms", keyURI}, &stdout, &stderr); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr.String())
	}
	if want := "jitd: warning: --kms has pin-value: the token's PIN is written, in clear, to jitd.yaml's ca_key"; !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr %q, want the warning %q", stderr.String(), want)
	}
	fi, err := os.Stat(d.path(fileMeta))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("jitd.yaml holding the PIN: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(d.path(fileCAKey)); !os.IsNotExist(err) {
		t.Errorf("ca.key: %v, want none", err)
	}
}
