package jwtsvid

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestKeyIDIsThumbprint recomputes the RFC 7638 thumbprint of the signer's
// key from the RFC's own recipe, without go-jose.
func TestKeyIDIsThumbprint(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	pub := s.Public().(*ecdsa.PublicKey)
	point, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	canonical := `{"crv":"P-256","kty":"EC","x":"` + enc(point[1:33]) + `","y":"` + enc(point[33:]) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	if want := enc(sum[:]); s.KeyID() != want {
		t.Errorf("KeyID %q, want %q", s.KeyID(), want)
	}
	if a := s.Authority(); a.KeyID != s.KeyID() || !pub.Equal(a.PublicKey) {
		t.Errorf("Authority %+v does not match the signer", a)
	}
}

func TestLoadSigner(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	pkcs8, err := s.MarshalKey()
	if err != nil {
		t.Fatal(err)
	}
	sec1DER, err := x509.MarshalECPrivateKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	if !strings.HasPrefix(string(pkcs8), "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("MarshalKey wrote %q, want PKCS#8 PEM", strings.SplitN(string(pkcs8), "\n", 2)[0])
	}
	for name, keyPEM := range map[string][]byte{"PKCS#8": pkcs8, "SEC 1": sec1, "PKCS#8 with trailing space": append(pkcs8, "\n\n"...)} {
		t.Run(name, func(t *testing.T) {
			loaded, err := LoadSigner(Config{TrustDomain: td, Clock: fixedClock(t0)}, keyPEM)
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			if loaded.KeyID() != s.KeyID() || !s.key.Equal(loaded.key) {
				t.Fatalf("loaded key %q differs from %q", loaded.KeyID(), s.KeyID())
			}
			// A token of the loaded signer verifies with the original's bundle.
			token := mint(t, loaded, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute})
			if _, err := Validate(token, aud, s.Bundle(), WithTime(t0)); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The openssl-made key of testdata loads too.
	fixedSigner(t, fixedClock(t0))
}

func TestLoadSignerRefuses(t *testing.T) {
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("PRIVATE KEY", der)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good, err := genSigner(t, fixedClock(t0)).MarshalKey()
	if err != nil {
		t.Fatal(err)
	}
	pubDER := pkix(t, &p384.PublicKey)
	encrypted := pemOf("ENCRYPTED PRIVATE KEY", []byte{0x30, 0x00})
	tests := []struct {
		name    string
		keyPEM  []byte
		wantErr string
	}{
		{"empty", nil, "no PEM block found"},
		{"not PEM", []byte("hello"), "no PEM block found"},
		{"two keys", append(append([]byte{}, good...), good...), "more than one PEM block"},
		{"encrypted PKCS#8", encrypted, "the key is encrypted"},
		{"certificate", pemOf("CERTIFICATE", []byte{0x30, 0x00}), `PEM block "CERTIFICATE"`},
		{"public key", pemOf("PUBLIC KEY", pubDER), `PEM block "PUBLIC KEY"`},
		{"public key labeled private", pemOf("PRIVATE KEY", pubDER), "want an ECDSA P-256 private key"},
		{"garbage DER", pemOf("PRIVATE KEY", []byte{1, 2, 3}), "parsing signing key"},
		{"P-384", pkcs8(p384), "signing key is an ECDSA P-384 private key, want an ECDSA P-256 private key"},
		{"Ed25519", pkcs8(edKey), "signing key is a key of type ed25519.PrivateKey"},
		{"RSA", pkcs8(rsaKey), "signing key is an RSA 2048-bit private key"},
		{"no trust domain", good, "trust domain is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{TrustDomain: td}
			if tt.name == "no trust domain" {
				cfg = Config{}
			}
			_, err := LoadSigner(cfg, tt.keyPEM)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestWriteKeyFile(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	dir := t.TempDir()
	path := filepath.Join(dir, "jwt-signer.pem")
	if err := s.WriteKeyFile(path); err != nil {
		t.Fatalf("WriteKeyFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	loaded, err := LoadSignerFile(Config{TrustDomain: td}, path)
	if err != nil || loaded.KeyID() != s.KeyID() {
		t.Fatalf("LoadSignerFile: %v, kid %v; want %s", err, loaded, s.KeyID())
	}

	// No overwrite, by another key or the same: the file stays as it was.
	before, _ := os.ReadFile(path)
	err = genSigner(t, fixedClock(t0)).WriteKeyFile(path)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteKeyFile: %v, want fs.ErrExist", err)
	}
	checkErr(t, err, "jwtsvid: writing signing key "+path)
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the key file changed")
	}
	// No temporary file left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}

	// Errors name the file.
	if err := s.WriteKeyFile(filepath.Join(dir, "missing", "k.pem")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("WriteKeyFile into a missing directory: %v", err)
	}
	_, err = LoadSignerFile(Config{TrustDomain: td}, filepath.Join(dir, "nope.pem"))
	checkErr(t, err, "reading signing key")
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSignerFile(Config{TrustDomain: td}, bad)
	checkErr(t, err, "(file "+bad+")")
}

func TestNewBundle(t *testing.T) {
	a, b := genSigner(t, fixedClock(t0)), genSigner(t, fixedClock(t0))
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name        string
		authorities []Authority
		wantKIDs    []string
		wantErr     string
	}{
		{name: "one", authorities: []Authority{a.Authority()}, wantKIDs: []string{a.KeyID()}},
		{name: "rotation", authorities: []Authority{a.Authority(), b.Authority()}, wantKIDs: []string{a.KeyID(), b.KeyID()}},
		{name: "same key twice", authorities: []Authority{a.Authority(), a.Authority()}, wantKIDs: []string{a.KeyID()}},
		{name: "none", wantErr: "bundle of example.org: no keys"},
		{name: "empty key ID", authorities: []Authority{{PublicKey: a.Public()}}, wantErr: "key 0 has no key ID"},
		{name: "key ID for two keys", authorities: []Authority{a.Authority(), {KeyID: a.KeyID(), PublicKey: b.Public()}}, wantErr: "names two different keys"},
		{name: "RSA 1024", authorities: []Authority{{KeyID: "r", PublicKey: &weak.PublicKey}}, wantErr: "unsupported key: an RSA 1024-bit public key"},
		{name: "Ed25519", authorities: []Authority{{KeyID: "e", PublicKey: edPub}}, wantErr: "unsupported key: a key of type ed25519.PublicKey"},
		{name: "private key", authorities: []Authority{{KeyID: "p", PublicKey: a.key}}, wantErr: "unsupported key: an ECDSA P-256 private key"},
		{name: "nil key", authorities: []Authority{{KeyID: "n"}}, wantErr: "unsupported key: nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle, err := NewBundle(td, tt.authorities...)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			got := bundle.JWTAuthorities()
			if bundle.TrustDomain() != td || len(got) != len(tt.wantKIDs) {
				t.Fatalf("bundle of %s with %d keys, want %s with %d", bundle.TrustDomain(), len(got), td, len(tt.wantKIDs))
			}
			for _, kid := range tt.wantKIDs {
				if _, ok := got[kid]; !ok {
					t.Errorf("bundle lacks %q", kid)
				}
			}
		})
	}
	_, err = NewBundle(spiffeid.TrustDomain{}, a.Authority())
	checkErr(t, err, "bundle: trust domain is required")
}

func TestMarshalJWKS(t *testing.T) {
	a, b := genSigner(t, fixedClock(t0)), genSigner(t, fixedClock(t0))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := NewBundle(td, a.Authority(), b.Authority(), Authority{KeyID: "rsa-1", PublicKey: &rsaKey.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	first, err := MarshalJWKS(bundle)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 { // map order must not show
		again, err := MarshalJWKS(bundle.Clone())
		if err != nil || string(again) != string(first) {
			t.Fatalf("MarshalJWKS not deterministic: %v\n%s\n%s", err, first, again)
		}
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(first, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k["kid"].(string))
		if _, ok := k["use"]; ok {
			t.Errorf("key %v has a use parameter", k["kid"])
		}
		if _, ok := k["d"]; ok {
			t.Errorf("key %v leaks a private part", k["kid"])
		}
	}
	for i := 1; i < len(kids); i++ {
		if kids[i-1] >= kids[i] {
			t.Errorf("key IDs %q not sorted", kids)
		}
	}
	// go-spiffe, as a Workload API client does, reads back the same bundle.
	parsed, err := jwtbundle.Parse(td, first)
	if err != nil {
		t.Fatalf("jwtbundle.Parse: %v", err)
	}
	if !parsed.Equal(bundle) {
		t.Error("parsed JWKS differs from the bundle")
	}
	if _, err := MarshalJWKS(nil); err == nil {
		t.Error("MarshalJWKS(nil) succeeded")
	}
}
