package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"go.step.sm/crypto/x509util"
)

// BenchmarkMint compares Mint against a bare x509.CreateCertificate of the
// same leaf (P-256 CA, P-256 leaf key, template built once) in the same run.
// Key generation is excluded: every request carries a public key.
func BenchmarkMint(b *testing.B) {
	c := newTestCA(b, KeyTypeECP256, time.Hour)
	pub := newKey(b, KeyTypeECP256).Public()
	skid, err := x509util.GenerateSubjectKeyID(pub)
	if err != nil {
		b.Fatal(err)
	}
	raw := &x509.Certificate{
		SerialNumber:          mustSerial(b),
		URIs:                  []*url.URL{workload.URL()},
		NotBefore:             t0.Add(-Backdate),
		NotAfter:              t0.Add(5 * time.Minute),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyId:          skid,
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, raw, c.cert, pub, c.signer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("identity", func(b *testing.B) {
		b.ReportAllocs()
		req := Request{ID: workload, PublicKey: pub, TTL: 5 * time.Minute}
		for b.Loop() {
			if _, err := c.Mint(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grant", func(b *testing.B) {
		b.ReportAllocs()
		req := Request{ID: workload, PublicKey: pub, TTL: 5 * time.Minute, Grant: sampleGrant()}
		for b.Loop() {
			if _, err := c.Mint(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMintPKCS11 is Mint of a grant SVID (as BenchmarkMint/grant) with
// the P-256 CA key in a SoftHSM2 token ("softhsm2") against the same with the
// key in memory ("file": a key loaded from ca.key), in the same run: what
// the token's signing adds. The public key is fixed; the token key is made
// for the run and deleted after it.
func BenchmarkMintPKCS11(b *testing.B) {
	tok := softhsmtest.Require(b)
	keyURI, err := WithKeyObject(tok.URI(""))
	if err != nil {
		b.Fatal(err)
	}
	hsm, err := GenerateKMS(context.Background(), Config{TrustDomain: td, KeyType: KeyTypeECP256, TTL: time.Hour, Clock: fixedClock(t0)}, keyURI)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := hsm.DeleteKey(); err != nil {
			b.Error(err)
		}
		hsm.Close()
	})
	file := newTestCA(b, KeyTypeECP256, time.Hour)
	req := Request{ID: workload, PublicKey: newKey(b, KeyTypeECP256).Public(), TTL: 5 * time.Minute, Grant: sampleGrant()}
	for _, bc := range []struct {
		name string
		c    *CA
	}{{"file", file}, {"softhsm2", hsm}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.Mint(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckSVID is the exported re-check, signature verification
// included: what Mint would add if it verified the signature a second time.
func BenchmarkCheckSVID(b *testing.B) {
	c := newTestCA(b, KeyTypeECP256, time.Hour)
	svid, err := c.Mint(Request{ID: workload, PublicKey: newKey(b, KeyTypeECP256).Public(), TTL: 5 * time.Minute, Grant: sampleGrant()})
	if err != nil {
		b.Fatal(err)
	}
	leaf, ca := svid.Certificates[0], c.Certificate()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckSVID(leaf, workload, ca); err != nil {
			b.Fatal(err)
		}
	}
}
