package jwtsvid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	spiffejwt "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// wrapSigner is a crypto.Signer that is not an *ecdsa.PrivateKey, as a
// PKCS#11 token's key is not: Sign returns what sign makes of the key's
// ASN.1 DER signature (the signature itself when sign is nil).
type wrapSigner struct {
	key  crypto.Signer
	sign func(der []byte) ([]byte, error)
}

func (w wrapSigner) Public() crypto.PublicKey { return w.key.Public() }

func (w wrapSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	der, err := w.key.Sign(r, digest, opts)
	if err != nil || w.sign == nil {
		return der, err
	}
	return w.sign(der)
}

func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNewSignerCryptoSigner: a signer whose key is behind a crypto.Signer
// mints tokens of the same form as a key in memory (header, r || s of the
// curve's size) that Validate and go-spiffe accept with its bundle.
func TestNewSignerCryptoSigner(t *testing.T) {
	tests := []struct {
		name    string
		curve   elliptic.Curve
		alg     string
		sigSize int
	}{
		{"P-256", elliptic.P256(), "ES256", 64},
		{"P-384", elliptic.P384(), "ES384", 96},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := wallNow()
			key := ecKey(t, tt.curve)
			s, err := NewSigner(Config{TrustDomain: td, Clock: fixedClock(now)}, wrapSigner{key: key})
			if err != nil {
				t.Fatalf("NewSigner: %v", err)
			}
			if s.key != nil || !key.PublicKey.Equal(s.Public()) {
				t.Fatalf("the signer holds a private key in memory, or another public key")
			}
			for _, g := range []bool{false, true} {
				req := Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute}
				if g {
					req.Grant = sampleGrant()
				}
				token := mint(t, s, req)
				c, err := Validate(token, aud, s.Bundle(), WithTime(now))
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if c.ID != workload || c.KeyID != s.KeyID() || (c.Grant != nil) != g {
					t.Errorf("claims %+v: want ID %s, kid %s, grant %v", c, workload, s.KeyID(), g)
				}
				if _, err := spiffejwt.ParseAndValidate(token, s.Bundle(), []string{aud}); err != nil {
					t.Errorf("go-spiffe ParseAndValidate: %v", err)
				}
				header, _, sig := segments(t, token)
				if want := headerJSON(tt.alg, s.KeyID()); header != want {
					t.Errorf("header %s, want %s", header, want)
				}
				if raw, err := base64.RawURLEncoding.DecodeString(sig); err != nil || len(raw) != tt.sigSize {
					t.Errorf("signature of %d bytes (%v), want r || s of %d", len(raw), err, tt.sigSize)
				}
			}
		})
	}

	// The same P-256 key in memory and behind a crypto.Signer: one key ID,
	// one header, and each one's bundle verifies the other's tokens.
	key := ecKey(t, elliptic.P256())
	mem, err := NewSigner(Config{TrustDomain: td, Clock: fixedClock(t0)}, key)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := NewSigner(Config{TrustDomain: td, Clock: fixedClock(t0)}, wrapSigner{key: key})
	if err != nil {
		t.Fatal(err)
	}
	if mem.key != key || mem.KeyID() != wrapped.KeyID() {
		t.Fatalf("in memory: key %v kid %q; wrapped: kid %q", mem.key != nil, mem.KeyID(), wrapped.KeyID())
	}
	req := Request{ID: workload, Audience: []string{aud}, TTL: time.Minute}
	memTok, wrapTok := mint(t, mem, req), mint(t, wrapped, req)
	if strings.Split(memTok, ".")[0] != strings.Split(wrapTok, ".")[0] {
		t.Errorf("headers differ: %s and %s", memTok, wrapTok)
	}
	if _, err := Validate(wrapTok, aud, mem.Bundle(), WithTime(t0)); err != nil {
		t.Errorf("the in-memory key's bundle refuses the wrapped key's token: %v", err)
	}
	if _, err := Validate(memTok, aud, wrapped.Bundle(), WithTime(t0)); err != nil {
		t.Errorf("the wrapped key's bundle refuses the in-memory key's token: %v", err)
	}
	// Only a key in memory is written to a file.
	if _, err := mem.MarshalKey(); err != nil {
		t.Errorf("MarshalKey of a key in memory: %v", err)
	}
	_, err = wrapped.MarshalKey()
	checkErr(t, err, "the key is not in memory")
}

func TestNewSignerRefuses(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		key     crypto.Signer
		wantErr string
	}{
		{"nil", Config{TrustDomain: td}, nil, "jwtsvid: signing key is nil"},
		{"no trust domain", Config{}, wrapSigner{key: ecKey(t, elliptic.P256())}, "trust domain is required"},
		{"P-521", Config{TrustDomain: td}, wrapSigner{key: ecKey(t, elliptic.P521())}, "signing key is a crypto.Signer of an ECDSA P-521 public key, want an ECDSA P-256 (ES256) or P-384 (ES384) key"},
		{"P-521 in memory", Config{TrustDomain: td}, ecKey(t, elliptic.P521()), "signing key is an ECDSA P-521 private key, want"},
		{"Ed25519", Config{TrustDomain: td}, wrapSigner{key: edKey}, "signing key is a crypto.Signer (jwtsvid.wrapSigner) of a key of type ed25519.PublicKey"},
		{"RSA", Config{TrustDomain: td}, wrapSigner{key: rsaKey}, "of an RSA 2048-bit public key, want an ECDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner(tt.cfg, tt.key)
			checkErr(t, err, tt.wantErr)
		})
	}
}

// TestNewSignerFailsClosed: what a crypto.Signer returns is checked before
// a token carries it; a bad signature is an error naming it, never a token.
func TestNewSignerFailsClosed(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	other := ecKey(t, elliptic.P256())
	derOf := func(r, s *big.Int) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		sign    func(der []byte) ([]byte, error)
		wantErr string
	}{
		{"signer error", func([]byte) ([]byte, error) { return nil, errors.New("CKR_DEVICE_REMOVED") }, "the signing key failed to sign: CKR_DEVICE_REMOVED"},
		{"raw r||s instead of DER", func([]byte) ([]byte, error) { return make([]byte, 64), nil }, "not ASN.1 DER"},
		{"trailing data", func(der []byte) ([]byte, error) { return append(der, 0), nil }, "1 bytes after its ASN.1 DER"},
		{"r too long", func([]byte) ([]byte, error) { return derOf(new(big.Int).Lsh(big.NewInt(1), 264), big.NewInt(1)), nil }, "r is out of range for a 32-byte curve"},
		{"s zero", func([]byte) ([]byte, error) { return derOf(big.NewInt(1), big.NewInt(0)), nil }, "s is out of range"},
		{"r negative", func([]byte) ([]byte, error) { return derOf(big.NewInt(-1), big.NewInt(1)), nil }, "r is out of range"},
		{"in range but wrong", func([]byte) ([]byte, error) { return derOf(big.NewInt(1), big.NewInt(1)), nil }, "does not verify with its public key"},
		{"another key's signature", func([]byte) ([]byte, error) {
			return other.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
		}, "does not verify with its public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(Config{TrustDomain: td, Clock: fixedClock(t0)}, wrapSigner{key: key, sign: tt.sign})
			if err != nil {
				t.Fatal(err)
			}
			token, _, err := s.Mint(Request{ID: workload, Audience: []string{aud}, TTL: time.Minute})
			if token != "" {
				t.Errorf("Mint returned a token: %s", token)
			}
			checkErr(t, err, "jwtsvid: signing token for "+workload.String())
			checkErr(t, err, tt.wantErr)
		})
	}
}

// TestRawECDSASignature: r and s are left-padded to the curve's size.
func TestRawECDSASignature(t *testing.T) {
	der, err := asn1.Marshal(struct{ R, S *big.Int }{big.NewInt(0x0102), new(big.Int).SetBytes([]byte{0xff, 1, 2, 3})})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rawECDSASignature(der, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 1, 2, 0xff, 1, 2, 3}; string(got) != string(want) {
		t.Errorf("got % x, want % x", got, want)
	}
}
