package jwtsvid

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"github.com/jitgrant/jitgrant/issuer/ca"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

// BenchmarkSignJWTPKCS11 is Mint of a grant's JWT-SVID (as
// BenchmarkMintJWT/grant) with the P-256 key in a SoftHSM2 token
// ("softhsm2") against the same with the key in memory, in the same run:
// loaded from a file ("file", go-jose signs with the *ecdsa.PrivateKey) and
// behind a crypto.Signer wrapper ("crypto.Signer": the token's path,
// DER-to-r||s conversion and verification included, without the token).
// The token key is made for the run and deleted after it.
func BenchmarkSignJWTPKCS11(b *testing.B) {
	tok := softhsmtest.Require(b)
	keyURI, err := ca.NewKeyURI(tok.URI(""), "jwtsvid-bench")
	if err != nil {
		b.Fatal(err)
	}
	k, err := ca.OpenTokenKey(context.Background(), keyURI, "JWT key")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := k.Delete(); err != nil {
			b.Error(err)
		}
		k.Close()
	})
	key, err := k.Create(ca.KeyTypeECP256)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{TrustDomain: td, Clock: fixedClock(t0)}
	hsm, err := NewSigner(cfg, key)
	if err != nil {
		b.Fatal(err)
	}
	file := fixedSigner(b, fixedClock(t0))
	wrapped, err := NewSigner(cfg, wrapSigner{key: file.key})
	if err != nil {
		b.Fatal(err)
	}
	req := Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute, Grant: sampleGrant()}
	for _, bc := range []struct {
		name string
		s    *Signer
	}{{"file", file}, {"crypto.Signer", wrapped}, {"softhsm2", hsm}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := bc.s.Mint(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
