package jwtsvid

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	spiffejwt "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// BenchmarkMintJWT compares Mint against a hand-rolled ES256 JWT of the same
// identity claims (header encoded once, encoding/json, crypto/ecdsa) in the
// same run.
func BenchmarkMintJWT(b *testing.B) {
	s := genSigner(b, fixedClock(t0))
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		header := b64(headerJSON("ES256", s.KeyID())) + "."
		for b.Loop() {
			if _, err := rawMint(s.key, header, workload.String()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("identity", func(b *testing.B) {
		b.ReportAllocs()
		req := Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute}
		for b.Loop() {
			if _, _, err := s.Mint(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grant", func(b *testing.B) {
		b.ReportAllocs()
		req := Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute, Grant: sampleGrant()}
		for b.Loop() {
			if _, _, err := s.Mint(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkValidateJWT compares Validate against a hand-rolled check of the
// same token (split, base64, SHA-256, ECDSA verification, encoding/json)
// and against go-spiffe's jwtsvid.ParseAndValidate, in the same run.
func BenchmarkValidateJWT(b *testing.B) {
	now := wallNow() // go-spiffe reads the wall clock
	s := genSigner(b, fixedClock(now))
	bundle := s.Bundle()
	identity := mint(b, s, Request{ID: workload, Audience: []string{aud}, TTL: time.Hour})
	withGrant := mint(b, s, Request{ID: workload, Audience: []string{aud}, TTL: time.Hour, Grant: sampleGrant()})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rawValidate(&s.key.PublicKey, identity); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("identity", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Validate(identity, aud, bundle, WithTime(now)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Validate(withGrant, aud, bundle, WithTime(now)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-spiffe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := spiffejwt.ParseAndValidate(identity, bundle, []string{aud}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// rawMint is the floor of minting: the same claims as an identity Mint,
// signed with no JOSE library.
func rawMint(key *ecdsa.PrivateKey, header, sub string) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	body, err := json.Marshal(payload{
		Subject: sub, Audience: []string{aud},
		Expiry: t0.Add(5 * time.Minute).Unix(), IssuedAt: t0.Unix(),
		ID: base64.RawURLEncoding.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", err
	}
	input := header + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig[:]), nil
}

// rawValidate is the floor of validating: the signature and a decode of the
// claims, with no header, claim or time checks.
func rawValidate(pub *ecdsa.PublicKey, token string) error {
	i := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token[:i]))
	if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return errVerify
	}
	body, err := base64.RawURLEncoding.DecodeString(token[strings.IndexByte(token, '.')+1 : i])
	if err != nil {
		return err
	}
	var claims map[string]any
	return json.Unmarshal(body, &claims)
}

var errVerify = errors.New("signature does not verify")
