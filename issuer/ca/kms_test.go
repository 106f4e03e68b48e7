package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

// TestKMSGenerateLoadMint creates a CA key inside a SoftHSM2 token, saves
// only the certificate, loads the CA again from the certificate and the key
// URI, and mints with both: every SVID passes CheckSVID and verifies under
// the bundle, as with a file key.
func TestKMSGenerateLoadMint(t *testing.T) {
	tok := softhsmtest.Require(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		kt   KeyType
		obj  string
	}{
		{name: "p256", kt: KeyTypeECP256, obj: "id=a101;object=kms-test-p256"},
		{name: "p384", kt: KeyTypeECP384, obj: "id=a102;object=kms-test-p384"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keyURI := tok.URI(tt.obj)
			cfg := Config{TrustDomain: td, KeyType: tt.kt, TTL: time.Hour, Clock: fixedClock(t0)}
			gen, err := GenerateKMS(ctx, cfg, keyURI)
			if err != nil {
				t.Fatalf("GenerateKMS: %v", err)
			}
			defer gen.Close()
			if got := keyTypeOf(gen.Certificate().PublicKey); got != tt.kt {
				t.Errorf("CA key type %s, want %s", got, tt.kt)
			}
			if _, _, err := gen.Marshal(nil); err == nil || !strings.Contains(err.Error(), "PKCS#11 token") {
				t.Errorf("Marshal of a token key: error %v, want one naming the token", err)
			}
			certPath := filepath.Join(t.TempDir(), "ca.crt")
			if err := gen.WriteCertFile(certPath); err != nil {
				t.Fatalf("WriteCertFile: %v", err)
			}
			if err := gen.WriteCertFile(certPath); !errors.Is(err, fs.ErrExist) {
				t.Errorf("second WriteCertFile: %v, want fs.ErrExist", err)
			}
			// A second key of the same id and object is refused.
			if _, err := GenerateKMS(ctx, cfg, keyURI); !errors.Is(err, fs.ErrExist) {
				t.Errorf("GenerateKMS again: %v, want fs.ErrExist", err)
			}
			loaded, err := LoadKMS(ctx, Config{TrustDomain: td, Clock: fixedClock(t0.Add(time.Minute))}, certPath, keyURI)
			if err != nil {
				t.Fatalf("LoadKMS: %v", err)
			}
			defer loaded.Close()
			for _, c := range []*CA{gen, loaded} {
				for _, g := range []bool{false, true} {
					req := Request{ID: workload, PublicKey: newKey(t, KeyTypeECP256).Public(), TTL: 5 * time.Minute}
					if g {
						req.Grant = sampleGrant()
					}
					svid, err := c.Mint(req)
					if err != nil {
						t.Fatalf("Mint (grant %v): %v", g, err)
					}
					if err := CheckSVID(svid.Certificates[0], workload, gen.Certificate()); err != nil {
						t.Errorf("CheckSVID: %v", err)
					}
					if _, _, err := x509svid.Verify(svid.Certificates, gen.Bundle(), x509svid.WithTime(t0.Add(time.Minute))); err != nil {
						t.Errorf("x509svid.Verify: %v", err)
					}
				}
			}
		})
	}
}

// TestKMSErrors: each way a token key can be unreachable fails with an
// error naming what is wrong, and no CA.
func TestKMSErrors(t *testing.T) {
	tok := softhsmtest.Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	// A CA certificate to load with: its key is in the token.
	existing := tok.URI("id=a1ff;object=kms-test-errors")
	c, err := GenerateKMS(ctx, Config{TrustDomain: td, TTL: time.Hour, Clock: fixedClock(t0)}, existing)
	if err != nil {
		t.Fatalf("GenerateKMS: %v", err)
	}
	certPath := filepath.Join(dir, "ca.crt")
	if err := c.WriteCertFile(certPath); err != nil {
		t.Fatal(err)
	}
	c.Close()
	emptyPIN := filepath.Join(dir, "empty-pin")
	if err := os.WriteFile(emptyPIN, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "pkcs11:module-path=" + tok.Module + ";token=" + tok.Label + ";id=a1ff;object=kms-test-errors"
	tests := []struct {
		name    string
		keyURI  string
		kt      KeyType // for generate
		gen     bool    // GenerateKMS instead of LoadKMS
		wantErr []string
	}{
		{name: "wrong PIN", keyURI: base + "?pin-value=0000", wantErr: []string{`PKCS#11 token "jitgrant"`, "wrong PIN", "CKR_PIN_INCORRECT"}},
		{name: "wrong PIN in pin-value is not echoed", keyURI: base + "?pin-value=secret99&x=1", wantErr: []string{"wrong PIN"}},
		{name: "missing token", keyURI: strings.Replace(tok.URI("id=a1ff;object=kms-test-errors"), "token=jitgrant", "token=nosuch", 1), wantErr: []string{`PKCS#11 token "nosuch"`, "no such token"}},
		{name: "missing object", keyURI: tok.URI("id=b0b0;object=nosuch"), wantErr: []string{"CA key object=nosuch;id=b0b0 not found", `PKCS#11 token "jitgrant"`}},
		{name: "module path does not exist", keyURI: strings.Replace(tok.URI("object=x"), tok.Module, "/nonexistent/libpkcs11.so", 1), wantErr: []string{"PKCS#11 module-path /nonexistent/libpkcs11.so", "no such file or directory"}},
		{name: "no module path", keyURI: "pkcs11:token=jitgrant;object=x?pin-value=1234", wantErr: []string{"module-path is required"}},
		{name: "no token", keyURI: "pkcs11:module-path=" + tok.Module + ";object=x?pin-value=1234", wantErr: []string{"token, serial or slot-id is required"}},
		{name: "pin-source missing", keyURI: base + "?pin-source=" + filepath.Join(dir, "no-pin"), wantErr: []string{`PIN of PKCS#11 token "jitgrant": pin-source`, "no-pin: no such file"}},
		{name: "pin-source empty", keyURI: base + "?pin-source=" + emptyPIN, wantErr: []string{"pin-source " + emptyPIN + " is empty"}},
		{name: "cloud KMS scheme", keyURI: "awskms:key-id=1234", wantErr: []string{`key URI scheme "awskms" is not supported: only pkcs11:`}},
		{name: "ed25519 in a token", gen: true, kt: KeyTypeEd25519, keyURI: tok.URI("id=a1fe;object=kms-test-ed"), wantErr: []string{"key type ed25519 cannot be generated in a PKCS#11 token"}},
		{name: "generate without id", gen: true, keyURI: tok.URI("object=kms-test-noid"), wantErr: []string{"id and object are required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *CA
			var err error
			if tt.gen {
				c, err = GenerateKMS(ctx, Config{TrustDomain: td, KeyType: tt.kt, Clock: fixedClock(t0)}, tt.keyURI)
			} else {
				c, err = LoadKMS(ctx, Config{TrustDomain: td, Clock: fixedClock(t0)}, certPath, tt.keyURI)
			}
			if err == nil {
				c.Close()
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if strings.Contains(err.Error(), "secret99") {
				t.Errorf("error %q shows the PIN", err)
			}
		})
	}
}

func TestWithKeyObject(t *testing.T) {
	for _, tt := range []struct {
		name, in, wantPrefix, wantSuffix string
	}{
		{name: "token only", in: "pkcs11:token=t?pin-source=/p", wantPrefix: "pkcs11:token=t;id=", wantSuffix: ";object=jitgrant-ca?pin-source=/p"},
		{name: "no query", in: "pkcs11:token=t", wantPrefix: "pkcs11:token=t;id=", wantSuffix: ";object=jitgrant-ca"},
		{name: "object given", in: "pkcs11:token=t;object=mine", wantPrefix: "pkcs11:token=t;object=mine", wantSuffix: "object=mine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WithKeyObject(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, tt.wantSuffix) {
				t.Errorf("WithKeyObject(%q) = %q, want %q...%q", tt.in, got, tt.wantPrefix, tt.wantSuffix)
			}
		})
	}
	if _, err := WithKeyObject("awskms:key-id=1"); err == nil || !strings.Contains(err.Error(), `key URI scheme "awskms" is not supported`) {
		t.Errorf("WithKeyObject(awskms:...): %v, want the scheme refused", err)
	}
}

func TestNewKeyURI(t *testing.T) {
	for _, tt := range []struct {
		name, in, object, wantPrefix, wantSuffix, wantErr string
	}{
		{name: "token only", in: "pkcs11:module-path=/m.so;token=t?pin-source=/p", object: "jitgrant-jwt",
			wantPrefix: "pkcs11:module-path=/m.so;token=t;id=", wantSuffix: ";object=jitgrant-jwt?pin-source=/p"},
		{name: "the CA key's id and object replaced", in: "pkcs11:module-path=/m.so;token=t;id=01;object=ca?pin-source=/p", object: "jitgrant-jwt",
			wantPrefix: "pkcs11:module-path=/m.so;token=t;id=", wantSuffix: ";object=jitgrant-jwt?pin-source=/p"},
		{name: "no query, id first", in: "pkcs11:id=01;token=t", object: "k", wantPrefix: "pkcs11:token=t;id=", wantSuffix: ";object=k"},
		{name: "cloud KMS", in: "awskms:key-id=1", object: "k", wantErr: `key URI scheme "awskms" is not supported`},
		{name: "empty object", in: "pkcs11:token=t", object: "", wantErr: `key object ""`},
		{name: "object with a separator", in: "pkcs11:token=t", object: "a;id=02", wantErr: `key object "a;id=02"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewKeyURI(tt.in, tt.object)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "ca: ") {
					t.Fatalf("NewKeyURI: %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, tt.wantSuffix) || strings.Count(got, "id=") != 1 || strings.Count(got, "object=") != 1 {
				t.Errorf("NewKeyURI(%q) = %q, want %q + 16 hex digits + %q", tt.in, got, tt.wantPrefix, tt.wantSuffix)
			}
			if len(got) != len(tt.wantPrefix)+16+len(tt.wantSuffix) {
				t.Errorf("NewKeyURI(%q) = %q: the id is not 8 bytes in hex", tt.in, got)
			}
			again, _ := NewKeyURI(tt.in, tt.object)
			if again == got {
				t.Errorf("two calls gave the same id: %q", got)
			}
		})
	}
}

// TestTokenKey: a key other than the CA's, in the token: created, signing
// (ECDSA, verified with its public key), refused when it exists, found by
// a second opening, deleted; errors name it by what it is.
func TestTokenKey(t *testing.T) {
	tok := softhsmtest.Require(t)
	ctx := context.Background()
	keyURI := tok.URI("id=a201;object=kms-test-token-key")
	k, err := OpenTokenKey(ctx, keyURI, "JWT key")
	if err != nil {
		t.Fatalf("OpenTokenKey: %v", err)
	}
	defer k.Close()
	if _, err := k.Signer(); err == nil || !strings.Contains(err.Error(), "ca: JWT key object=kms-test-token-key;id=a201 not found in PKCS#11 token") {
		t.Fatalf("Signer before Create: %v, want the JWT key not found", err)
	}
	s, err := k.Create(KeyTypeECP256)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	digest := sha256.Sum256([]byte("jwt"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("the token key's signature does not verify with its P-256 public key (%T)", s.Public())
	}
	if _, err := k.Create(KeyTypeECP256); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "creating JWT key object=kms-test-token-key;id=a201") {
		t.Errorf("Create again: %v, want fs.ErrExist naming the JWT key", err)
	}
	if _, err := k.Create(KeyTypeEd25519); err == nil || !strings.Contains(err.Error(), "ed25519 cannot be generated") {
		t.Errorf("Create ed25519: %v", err)
	}
	k2, err := OpenTokenKey(ctx, keyURI, "JWT key")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := k2.Signer()
	if err != nil || !pub.Equal(s2.Public()) {
		t.Errorf("Signer from a second opening: %v, or another key", err)
	}
	k2.Close()
	if err := k.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := k.Signer(); err == nil || !strings.Contains(err.Error(), "JWT key object=kms-test-token-key;id=a201 not found") {
		t.Errorf("Signer after Delete: %v, want not found", err)
	}
	if _, err := OpenTokenKey(ctx, "awskms:key-id=1", "JWT key"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("OpenTokenKey(awskms:): %v", err)
	}
}
