package jitd

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// tokenHasKey reports whether the token holds the key keyURI names, failing
// t when the token cannot say.
func tokenHasKey(t *testing.T, keyURI string) bool {
	t.Helper()
	k, err := ca.OpenTokenKey(context.Background(), keyURI, "test key")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	_, err = k.Signer()
	if err != nil && !strings.Contains(err.Error(), "not found in PKCS#11 token") {
		t.Fatal(err)
	}
	return err == nil
}

// deleteTokenKey deletes the key keyURI names from the token.
func deleteTokenKey(t *testing.T, keyURI string) {
	t.Helper()
	k, err := ca.OpenTokenKey(context.Background(), keyURI, "test key")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Delete(); err != nil {
		t.Error(err)
	}
}

// TestInitKMSJWTKey: jitd init --kms makes the JWT-SVID key in the token
// beside the CA key, records it as jwt_key and writes no jwt.key; a failure
// after either key is made deletes both from the token, and a JWT key that
// exists already is refused and left alone.
func TestInitKMSJWTKey(t *testing.T) {
	tok := softhsmtest.Require(t)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	tests := []struct {
		name    string
		caKey   string
		jwtKey  string // "" lets init make the URI
		setup   func(t *testing.T, root string)
		wantErr []string
		// kept are keys that must be in the token afterwards, gone keys
		// that must not.
		kept, gone []string
	}{
		{
			name:  "made beside the CA key",
			caKey: tok.URI("id=d001;object=jitd-jwt-ok"),
		},
		{
			name:   "the JWT key exists: refused, left alone, the CA key deleted",
			caKey:  tok.URI("id=d002;object=jitd-jwt-exists-ca"),
			jwtKey: tok.URI("id=d003;object=jitd-jwt-exists"),
			setup: func(t *testing.T, _ string) {
				k, err := ca.OpenTokenKey(context.Background(), tok.URI("id=d003;object=jitd-jwt-exists"), "test key")
				if err != nil {
					t.Fatal(err)
				}
				defer k.Close()
				if _, err := k.Create(ca.KeyTypeECP256); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{`jitd: init: --kms: ca: creating JWT key object=jitd-jwt-exists;id=d003 in PKCS#11 token "jitgrant": it exists already`},
			kept:    []string{tok.URI("id=d003;object=jitd-jwt-exists")},
			gone:    []string{tok.URI("id=d002;object=jitd-jwt-exists-ca")},
		},
		{
			name:   "a late write fails: both keys deleted",
			caKey:  tok.URI("id=d004;object=jitd-jwt-late-ca"),
			jwtKey: tok.URI("id=d005;object=jitd-jwt-late"),
			setup: func(t *testing.T, root string) {
				// audit.pub points nowhere: writing it fails after both
				// keys are in the token.
				if err := os.Mkdir(filepath.Join(root, "data"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(root, "nowhere", "audit.pub"), filepath.Join(root, "data", fileAuditPub)); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{"audit.pub"},
			gone:    []string{tok.URI("id=d004;object=jitd-jwt-late-ca"), tok.URI("id=d005;object=jitd-jwt-late")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, root)
			}
			d := DataDir(filepath.Join(root, "data"))
			err := Init(InitConfig{Dir: d, TrustDomain: td.Name(), KMS: tt.caKey, jwtKeyURI: tt.jwtKey})
			t.Cleanup(func() {
				for _, k := range tt.kept {
					deleteTokenKey(t, k)
				}
			})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				checkJWTKeyInToken(t, d, td, tt.caKey)
				return
			}
			if err == nil {
				t.Fatal("Init: no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init: %v\nlacks %q", err, w)
				}
			}
			for _, name := range []string{fileCACert, fileJWTKey, fileMeta} {
				if _, err := os.Stat(d.path(name)); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", name, err)
				}
			}
			for _, k := range tt.kept {
				if !tokenHasKey(t, k) {
					t.Errorf("key %s was deleted; init must leave a key it did not make alone", k)
				}
			}
			for _, k := range tt.gone {
				if tokenHasKey(t, k) {
					t.Errorf("key %s is still in the token after the failed init", k)
				}
			}
		})
	}
}

// checkJWTKeyInToken checks the data directory d that init --kms made with
// CA key caKey: jwt_key names a key of its own (object=jitgrant-jwt unless
// a test named it, another id) in the same token with the same PIN, there
// is no jwt.key, and the signer serve loads signs with the token's key.
func checkJWTKeyInToken(t *testing.T, d DataDir, td spiffeid.TrustDomain, caKey string) {
	t.Helper()
	m, _, err := d.readMeta()
	if err != nil {
		t.Fatal(err)
	}
	if m.CAKey != caKey || m.JWTKey == "" || m.JWTKey == m.CAKey {
		t.Fatalf("jitd.yaml: ca_key %q, jwt_key %q; want ca_key %q and a jwt_key of its own", m.CAKey, m.JWTKey, caKey)
	}
	tokenPart := func(u string) string { return u[:strings.Index(u, ";id=")] }
	query := func(u string) string { return u[strings.Index(u, "?"):] }
	if tokenPart(m.JWTKey) != tokenPart(caKey) || query(m.JWTKey) != query(caKey) {
		t.Errorf("jwt_key %q is not in the token of ca_key %q with its PIN", m.JWTKey, caKey)
	}
	if _, err := os.Stat(d.path(fileJWTKey)); !os.IsNotExist(err) {
		t.Errorf("jwt.key: %v, want none", err)
	}
	s, made, closer, err := d.loadJWTSigner(context.Background(), td, time.Now)
	if err != nil {
		t.Fatalf("loading the JWT key: %v", err)
	}
	defer closer.Close()
	if made || closer == nil {
		t.Errorf("loadJWTSigner: made %v, closer %v; want the token's key", made, closer)
	}
	k, err := ca.OpenTokenKey(context.Background(), m.JWTKey, "JWT key")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	key, err := k.Signer()
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Error("the JWT signer's public key is not the token key's")
	}
	token, _, err := s.Mint(jwtsvid.Request{ID: spiffeid.RequireFromPath(td, "/w"), Audience: []string{"a"}, TTL: time.Minute})
	if err != nil {
		t.Fatalf("Mint with the token key: %v", err)
	}
	if _, err := jwtsvid.Validate(token, "a", s.Bundle()); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestServeKMSJWTKeyFailures: serve loads the JWT key from the token that
// jwt_key names, and fails closed naming the cause and jwt_key when the
// token cannot give it. The table calls the loader itself: PKCS#11 login is
// per process and token, so once the CA key's (same token) is open a wrong
// PIN in jwt_key alone goes unnoticed; jitd start is checked with a key
// missing from the token.
func TestServeKMSJWTKeyFailures(t *testing.T) {
	tok := softhsmtest.Require(t)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	root := t.TempDir()
	d := DataDir(filepath.Join(root, "data"))
	pinFile := filepath.Join(root, "pin")
	writeTestFile(t, pinFile, softhsmtest.PIN+"\n", 0o600)
	caKey := strings.Replace(tok.URI("id=d101;object=jitd-jwt-serve-ca"), tok.PINFile, pinFile, 1)
	jwtKey := strings.Replace(tok.URI("id=d102;object=jitd-jwt-serve"), tok.PINFile, pinFile, 1)
	if err := Init(InitConfig{Dir: d, TrustDomain: td.Name(), KMS: caKey, jwtKeyURI: jwtKey}); err != nil {
		t.Fatalf("Init --kms: %v", err)
	}
	t.Cleanup(func() {
		writeTestFile(t, pinFile, softhsmtest.PIN+"\n", 0o600)
		deleteTokenKey(t, caKey)
		deleteTokenKey(t, jwtKey)
	})
	meta := d.path(fileMeta)
	setJWTKey := func(t *testing.T, keyURI string) {
		t.Helper()
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		m, _, _ := d.readMeta()
		writeTestFile(t, meta, strings.Replace(string(b), "jwt_key: "+m.JWTKey, "jwt_key: "+keyURI, 1), 0o644)
		if m, _, _ = d.readMeta(); m.JWTKey != keyURI {
			t.Fatalf("jwt_key %q, want %q", m.JWTKey, keyURI)
		}
	}
	tests := []struct {
		name    string
		pin     string // written to the PIN file; "" removes it
		jwtKey  string // jwt_key in jitd.yaml
		wantErr string
	}{
		{name: "wrong PIN", pin: "9999\n", jwtKey: jwtKey, wantErr: `ca: opening PKCS#11 token "jitgrant" with module ` + tok.Module + `: wrong PIN`},
		{name: "PIN file gone", jwtKey: jwtKey, wantErr: `reading the PIN of PKCS#11 token "jitgrant": pin-source: open ` + pinFile},
		{name: "missing object", pin: softhsmtest.PIN, jwtKey: strings.Replace(jwtKey, "id=d102;object=jitd-jwt-serve", "id=d1ff;object=jitd-jwt-none", 1),
			wantErr: `ca: JWT key object=jitd-jwt-none;id=d1ff not found in PKCS#11 token "jitgrant"`},
		{name: "missing token", pin: softhsmtest.PIN, jwtKey: strings.Replace(jwtKey, "token=jitgrant", "token=absent", 1),
			wantErr: `PKCS#11 token "absent" with module ` + tok.Module + `: no such token`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(pinFile)
			if tt.pin != "" {
				writeTestFile(t, pinFile, tt.pin, 0o600)
			}
			setJWTKey(t, tt.jwtKey)
			s, _, closer, err := d.loadJWTSigner(context.Background(), td, time.Now)
			if err == nil {
				closer.Close()
				t.Fatalf("loaded a signer (kid %s), want an error", s.KeyID())
			}
			want := "jitd: " + tt.wantErr
			if !strings.HasPrefix(err.Error(), "jitd: ca: ") || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasSuffix(err.Error(), "(jwt_key in "+meta+")") {
				t.Errorf("error %v\nwant %q and the jwt_key it came from", err, want)
			}
		})
	}

	// jitd start: the CA key loads, the JWT key is not in the token.
	writeTestFile(t, pinFile, softhsmtest.PIN+"\n", 0o600)
	setJWTKey(t, strings.Replace(jwtKey, "id=d102", "id=d1fe", 1))
	cfg := ServeConfig{Dir: d, Listen: "127.0.0.1:0", MetricsListen: "", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		WorkloadSocket: filepath.Join(root, "w.sock"),
		Entries:        []attest.EntryConfig{{ID: "spiffe://example.org/w", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}}
	s, err := Start(context.Background(), cfg)
	if err == nil {
		s.Stop()
		t.Fatal("Start with the JWT key missing from the token: no error")
	}
	if !strings.Contains(err.Error(), "JWT key object=jitd-jwt-serve;id=d1fe not found") || !strings.Contains(err.Error(), "(jwt_key in "+meta+")") {
		t.Errorf("Start: %v\nwant the missing JWT key and jwt_key named", err)
	}
	// With jwt_key back, jitd starts, and its Workload API signs with the
	// token key: Stop releases the token.
	setJWTKey(t, jwtKey)
	s, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.jwtKey == nil {
		t.Error("the server holds no token for the JWT key")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := os.Stat(d.path(fileJWTKey)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve wrote jwt.key: %v", err)
	}
}
