package ca

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		name, in string
		want     KeyType
		wantErr  bool
	}{
		{name: "p256", in: "ec-p256", want: KeyTypeECP256},
		{name: "p384 upper case", in: "EC-P384", want: KeyTypeECP384},
		{name: "ed25519 spaced", in: " ed25519 ", want: KeyTypeEd25519},
		{name: "rsa", in: "rsa-2048", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), `"ec-p256", "ec-p384" or "ed25519"`) {
					t.Fatalf("ParseKeyType(%q) error %v, want one naming the valid values", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKeyType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name     string
		keyType  KeyType
		ttl      time.Duration
		wantKey  KeyType
		wantLife time.Duration
	}{
		{name: "defaults", wantKey: KeyTypeECP256, wantLife: DefaultTTL},
		{name: "p256", keyType: KeyTypeECP256, ttl: time.Hour, wantKey: KeyTypeECP256, wantLife: time.Hour},
		{name: "p384", keyType: KeyTypeECP384, ttl: 24 * time.Hour, wantKey: KeyTypeECP384, wantLife: 24 * time.Hour},
		{name: "ed25519", keyType: KeyTypeEd25519, ttl: time.Hour, wantKey: KeyTypeEd25519, wantLife: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Generate(Config{TrustDomain: td, KeyType: tt.keyType, TTL: tt.ttl, Clock: fixedClock(t0)})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			cert := c.Certificate()
			switch {
			case c.TrustDomain() != td:
				t.Errorf("TrustDomain %s, want %s", c.TrustDomain(), td)
			case keyTypeOf(cert.PublicKey) != tt.wantKey:
				t.Errorf("key type %q, want %q", keyTypeOf(cert.PublicKey), tt.wantKey)
			case !cert.BasicConstraintsValid || !cert.IsCA || !cert.MaxPathLenZero:
				t.Errorf("basic constraints valid=%v cA=%v pathLenZero=%v, want all true", cert.BasicConstraintsValid, cert.IsCA, cert.MaxPathLenZero)
			case cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
				t.Errorf("key usage %#x, want keyCertSign|cRLSign", cert.KeyUsage)
			case len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://example.org":
				t.Errorf("URI SANs %v, want [spiffe://example.org]", cert.URIs)
			case cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128:
				t.Errorf("serial %v, want positive and at most 128 bits", cert.SerialNumber)
			case !cert.NotBefore.Equal(t0.Add(-Backdate)) || !cert.NotAfter.Equal(t0.Add(tt.wantLife)):
				t.Errorf("validity [%s, %s], want [%s, %s]", cert.NotBefore, cert.NotAfter, t0.Add(-Backdate), t0.Add(tt.wantLife))
			case len(cert.SubjectKeyId) == 0:
				t.Error("no subject key identifier")
			case cert.CheckSignatureFrom(cert) != nil:
				t.Error("not self-signed")
			}
			roots := c.Bundle().X509Authorities()
			if len(roots) != 1 || !roots[0].Equal(cert) || c.Bundle().TrustDomain() != td {
				t.Errorf("bundle holds %d authorities for %s, want the CA certificate for %s", len(roots), c.Bundle().TrustDomain(), td)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no trust domain", cfg: Config{}, wantErr: "ca: config: trust domain is required"},
		{name: "bad key type", cfg: Config{TrustDomain: td, KeyType: "rsa"}, wantErr: `ca: config: KeyType: unknown key type "rsa": want "ec-p256", "ec-p384" or "ed25519"`},
		{name: "bad leaf key type", cfg: Config{TrustDomain: td, LeafKeyType: "EC-P256"}, wantErr: `ca: config: LeafKeyType: unknown key type "EC-P256"`},
		{name: "negative TTL", cfg: Config{TrustDomain: td, TTL: -time.Second}, wantErr: "ca: config: TTL -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Generate(tt.cfg); err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Generate error %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

// TestIntermediateCA loads a CA that is an intermediate under an upstream
// root, as when jitgrant sits under an existing PKI.
func TestIntermediateCA(t *testing.T) {
	rootKey := newKey(t, KeyTypeECP384)
	interKey := newKey(t, KeyTypeECP256)
	newRoot := func(notAfter time.Time, pathLen int) *x509.Certificate {
		tmpl := caTemplate("upstream root", 1, t0.Add(-time.Hour), notAfter)
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = pathLen, pathLen == 0
		return signRaw(t, tmpl, tmpl, rootKey.Public(), rootKey)
	}
	newInter := func(root *x509.Certificate, notAfter time.Time) *x509.Certificate {
		tmpl := caTemplate("jitgrant intermediate", 2, t0.Add(-time.Hour), notAfter, td.ID().URL())
		return signRaw(t, tmpl, root, interKey.Public(), rootKey)
	}
	root := newRoot(t0.Add(2*time.Hour), -1)
	inter := newInter(root, t0.Add(time.Hour))
	shortRoot := newRoot(t0.Add(30*time.Minute), -1)
	pathLenZeroRoot := newRoot(t0.Add(2*time.Hour), 0)
	constrained := caTemplate("constrained root", 3, t0.Add(-time.Hour), t0.Add(2*time.Hour))
	constrained.PermittedURIDomains = []string{"other.example"}
	constrainedRoot := signRaw(t, constrained, constrained, rootKey.Public(), rootKey)

	tests := []struct {
		name         string
		certs        []*x509.Certificate
		wantNotAfter time.Time
		wantErr      string
	}{
		{name: "intermediate then root", certs: []*x509.Certificate{inter, root}, wantNotAfter: t0.Add(time.Hour)},
		{name: "root expires first", certs: []*x509.Certificate{newInter(shortRoot, t0.Add(time.Hour)), shortRoot}, wantNotAfter: t0.Add(30 * time.Minute)},
		{name: "root missing", certs: []*x509.Certificate{inter}, wantErr: `ca: CA chain ends with "CN=jitgrant intermediate", issued by "CN=upstream root", which is not a self-signed root`},
		{name: "root first", certs: []*x509.Certificate{root, inter}, wantErr: "ca: CA key does not match the CA certificate"},
		{name: "root forbids intermediates", certs: []*x509.Certificate{newInter(pathLenZeroRoot, t0.Add(time.Hour)), pathLenZeroRoot}, wantErr: "ca: verifying CA chain"},
		{name: "root name constraints exclude the trust domain", certs: []*x509.Certificate{newInter(constrainedRoot, t0.Add(time.Hour)), constrainedRoot}, wantErr: "ca: verifying CA chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(Config{TrustDomain: td, Clock: fixedClock(t0)}, pemCert(tt.certs...), pemKey(t, interKey), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Load error %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if roots := c.Bundle().X509Authorities(); len(roots) != 1 || !roots[0].Equal(tt.certs[1]) {
				t.Errorf("bundle is not the upstream root")
			}
			svid, err := c.Mint(Request{ID: workload, TTL: 2 * time.Hour, Grant: sampleGrant()})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(tt.certs[0]) {
				t.Fatalf("SVID holds %d certificates, want the leaf and the intermediate", len(svid.Certificates))
			}
			leaf := svid.Certificates[0]
			if !leaf.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("NotAfter %s, want %s (clipped at the chain's earliest expiry)", leaf.NotAfter, tt.wantNotAfter)
			}
			if err := CheckSVID(leaf, workload, c.Certificate()); err != nil {
				t.Errorf("CheckSVID: %v", err)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(t0)); err != nil {
				t.Errorf("x509svid.Verify: %v", err)
			}
			certPEM, _, err := c.Marshal(nil)
			if err != nil || string(certPEM) != string(pemCert(tt.certs...)) {
				t.Errorf("Marshal cert PEM differs from the loaded chain (err %v)", err)
			}
		})
	}
}
