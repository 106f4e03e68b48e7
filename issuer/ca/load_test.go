package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/pemutil"
)

func pemCert(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func pemKey(t testing.TB, key any, opts ...pemutil.Options) []byte {
	t.Helper()
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func TestLoad(t *testing.T) {
	pass := []byte("correct horse battery staple")
	c := newTestCA(t, KeyTypeECP256, time.Hour)
	certPEM, plainKey, err := c.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, encKey, err := c.Marshal(pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(encKey, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("Marshal with a passphrase wrote no encrypted PKCS#8 key:\n%s", encKey)
	}
	legacyKey := pemKey(t, c.signer, pemutil.WithPassword(pass)) // RFC 1423 "Proc-Type: 4,ENCRYPTED"

	other := newTestCA(t, KeyTypeECP256, time.Hour)
	leaf, err := c.Mint(Request{ID: workload, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	foreignKey := newKey(t, KeyTypeECP256)
	foreign := signRaw(t, caTemplate("foreign", 1, t0.Add(-time.Hour), t0.Add(time.Hour), otherTD.ID().URL()), caTemplate("foreign", 1, t0, t0), foreignKey.Public(), foreignKey)

	tests := []struct {
		name       string
		certPEM    []byte
		keyPEM     []byte
		passphrase []byte
		now        time.Time
		wantErr    string
		wantIs     error
	}{
		{name: "plain key", certPEM: certPEM, keyPEM: plainKey},
		{name: "plain key, passphrase ignored", certPEM: certPEM, keyPEM: plainKey, passphrase: pass},
		{name: "encrypted key, right passphrase", certPEM: certPEM, keyPEM: encKey, passphrase: pass},
		{name: "encrypted key, wrong passphrase", certPEM: certPEM, keyPEM: encKey, passphrase: []byte("wrong"), wantErr: "ca: decrypting CA key: wrong passphrase", wantIs: ErrWrongPassphrase},
		{name: "encrypted key, no passphrase", certPEM: certPEM, keyPEM: encKey, wantErr: "ca: CA key: key is encrypted: a passphrase is required", wantIs: ErrPassphraseRequired},
		{name: "legacy encrypted key, right passphrase", certPEM: certPEM, keyPEM: legacyKey, passphrase: pass},
		{name: "legacy encrypted key, wrong passphrase", certPEM: certPEM, keyPEM: legacyKey, passphrase: []byte("wrong"), wantIs: ErrWrongPassphrase},
		{name: "key of another CA", certPEM: certPEM, keyPEM: pemKey(t, other.signer), wantErr: "ca: CA key does not match the CA certificate"},
		{name: "non-CA certificate", certPEM: pemCert(leaf.Certificates[0]), keyPEM: pemKey(t, leaf.PrivateKey), wantErr: "ca: CA certificate is not a CA certificate"},
		{name: "URI SAN of another trust domain", certPEM: pemCert(foreign), keyPEM: pemKey(t, foreignKey), wantErr: `ca: CA certificate URI SAN "spiffe://other.example" is not the trust domain's`},
		{name: "expired CA", certPEM: certPEM, keyPEM: plainKey, now: t0.Add(time.Hour), wantErr: "ca: CA chain expired at"},
		{name: "no certificate", certPEM: []byte("junk"), keyPEM: plainKey, wantErr: "ca: parsing CA certificate"},
		{name: "no key", certPEM: certPEM, keyPEM: []byte("junk"), wantErr: "ca: parsing CA key: no PEM block found"},
		{name: "two keys", certPEM: certPEM, keyPEM: append(append([]byte{}, plainKey...), plainKey...), wantErr: "ca: parsing CA key: more than one PEM block"},
		{name: "public key instead of private", certPEM: certPEM, keyPEM: pemKey(t, c.signer.Public()), wantErr: "ca: CA key holds a *ecdsa.PublicKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			got, err := Load(Config{TrustDomain: td, Clock: fixedClock(now)}, tt.certPEM, tt.keyPEM, tt.passphrase)
			if tt.wantErr != "" || tt.wantIs != nil {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
					t.Fatalf("Load error %v, want prefix %q and errors.Is %v", err, tt.wantErr, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !got.Certificate().Equal(c.Certificate()) {
				t.Error("loaded CA certificate differs from the original")
			}
			svid, err := got.Mint(Request{ID: workload, TTL: time.Minute, Grant: sampleGrant()})
			if err != nil {
				t.Fatalf("Mint with the loaded CA: %v", err)
			}
			// The original CA's bundle trusts what the loaded CA mints.
			if _, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(now)); err != nil {
				t.Errorf("x509svid.Verify: %v", err)
			}
		})
	}
}

func TestLoadKeyTypes(t *testing.T) {
	for _, kt := range keyTypes {
		t.Run(string(kt), func(t *testing.T) {
			c := newTestCA(t, kt, time.Hour)
			certPEM, keyPEM, err := c.Marshal(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Load(Config{TrustDomain: td, Clock: fixedClock(t0)}, certPEM, keyPEM, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if keyTypeOf(got.signer.Public()) != kt {
				t.Errorf("loaded key type %q, want %q", keyTypeOf(got.signer.Public()), kt)
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	pass := []byte("s3cret passphrase")
	c := newTestCA(t, KeyTypeEd25519, time.Hour)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := c.WriteFiles(certPath, keyPath, pass); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	for path, want := range map[string]fs.FileMode{certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the 2 files and no temporary", len(entries))
	}
	keyBefore, _ := os.ReadFile(keyPath)

	cfg := Config{TrustDomain: td, Clock: fixedClock(t0)}
	got, err := LoadFiles(cfg, certPath, keyPath, pass)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	if !got.Certificate().Equal(c.Certificate()) {
		t.Error("loaded CA certificate differs from the written one")
	}
	_, err = LoadFiles(cfg, certPath, keyPath, []byte("not it"))
	if want := "ca: decrypting CA key " + keyPath + ": wrong passphrase"; err == nil || err.Error() != want || !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("LoadFiles with a wrong passphrase: %v, want %q", err, want)
	}
	if _, err := LoadFiles(cfg, filepath.Join(dir, "missing.crt"), keyPath, pass); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFiles of a missing file: %v, want fs.ErrNotExist", err)
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		if err := c.WriteFiles(certPath, keyPath, nil); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second WriteFiles: %v, want fs.ErrExist", err)
		}
		if keyAfter, _ := os.ReadFile(keyPath); !bytes.Equal(keyAfter, keyBefore) {
			t.Error("key file changed")
		}
	})
	t.Run("writes nothing when the cert exists", func(t *testing.T) {
		newKey := filepath.Join(dir, "new.key")
		if err := c.WriteFiles(certPath, newKey, nil); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("WriteFiles: %v, want fs.ErrExist", err)
		}
		if _, err := os.Stat(newKey); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("key file written although the cert file exists: %v", err)
		}
	})
	t.Run("removes the key when the cert cannot be written", func(t *testing.T) {
		newKey := filepath.Join(dir, "k2.key")
		if err := c.WriteFiles(filepath.Join(dir, "no-such-dir", "ca.crt"), newKey, nil); err == nil {
			t.Fatal("WriteFiles into a missing directory succeeded")
		}
		if _, err := os.Stat(newKey); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("key file left behind: %v", err)
		}
	})
	t.Run("same path", func(t *testing.T) {
		p := filepath.Join(dir, "both.pem")
		if err := c.WriteFiles(p, p, nil); err == nil {
			t.Fatal("WriteFiles with one path for cert and key succeeded")
		}
	})
	t.Run("empty passphrase", func(t *testing.T) {
		if _, _, err := c.Marshal([]byte{}); err == nil {
			t.Fatal("Marshal with an empty passphrase succeeded")
		}
	})
}

// FuzzParseKey checks that key parsing never panics and never returns both
// a key and an error, or neither.
func FuzzParseKey(f *testing.F) {
	for _, kt := range keyTypes {
		f.Add(pemKey(f, newKey(f, kt), pemutil.WithPKCS8(true)))
	}
	f.Add(pemKey(f, newKey(f, KeyTypeECP256))) // SEC 1
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, keyPEM []byte) {
		key, err := parseKey(keyPEM, []byte("passphrase"), "CA key")
		if (key == nil) == (err == nil) {
			t.Fatalf("parseKey = %v, %v", key, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "ca: ") {
			t.Fatalf("error %q lacks the package prefix", err)
		}
	})
}
