package ca

import (
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

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
