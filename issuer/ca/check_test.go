package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestCheckSVIDRejects crafts certificates that break one rule each, signed
// with the standard library directly, and checks CheckSVID names the rule.
func TestCheckSVIDRejects(t *testing.T) {
	c := newTestCA(t, KeyTypeECP256, time.Hour)
	leafKey := newKey(t, KeyTypeECP256)
	// A stranger: another key posing as the CA (same subject and key ID).
	impostorKey := newKey(t, KeyTypeECP256)
	impostor := *c.Certificate()
	impostor.PublicKey = impostorKey.Public()

	grantExt, err := grant.Extension(sampleGrant())
	if err != nil {
		t.Fatal(err)
	}
	criticalGrant := grantExt
	criticalGrant.Critical = true
	nonCriticalKU, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	if err != nil {
		t.Fatal(err)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/someone-else")

	// valid returns the template Mint would use; each case breaks it.
	valid := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          mustSerial(t),
			URIs:                  []*url.URL{workload.URL()},
			NotBefore:             t0.Add(-Backdate),
			NotAfter:              t0.Add(5 * time.Minute),
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			SubjectKeyId:          []byte{1, 2, 3, 4},
			ExtraExtensions:       []pkix.Extension{grantExt},
		}
	}
	tests := []struct {
		name    string
		edit    func(*x509.Certificate)
		signer  *x509.Certificate // default: the CA
		id      spiffeid.ID       // default: workload
		wantErr string            // "" for the valid baseline
	}{
		{name: "valid", edit: func(*x509.Certificate) {}},
		{name: "two URI SANs", edit: func(c *x509.Certificate) { c.URIs = append(c.URIs, other.URL()) }, wantErr: "2 URI SANs, want exactly 1"},
		{name: "no URI SAN", edit: func(c *x509.Certificate) { c.URIs = nil; c.DNSNames = []string{"x"} }, wantErr: "0 URI SANs"},
		{name: "another SPIFFE ID", edit: func(c *x509.Certificate) { c.URIs = []*url.URL{other.URL()} }, wantErr: `URI SAN "spiffe://example.org/someone-else", want`},
		{name: "not a SPIFFE URI", edit: func(c *x509.Certificate) { c.URIs = []*url.URL{{Scheme: "https", Host: "example.org"}} }, wantErr: `URI SAN "https://example.org"`},
		{name: "DNS SAN too", edit: func(c *x509.Certificate) { c.DNSNames = []string{"ledger.example.org"} }, wantErr: "DNS, IP or email SAN present"},
		{name: "IP SAN too", edit: func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} }, wantErr: "DNS, IP or email SAN present"},
		{name: "cA=true", edit: func(c *x509.Certificate) { c.IsCA = true }, wantErr: "basic constraints cA=true"},
		{name: "basic constraints missing", edit: func(c *x509.Certificate) { c.BasicConstraintsValid = false }, wantErr: "basic constraints missing"},
		{name: "keyEncipherment too", edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageKeyEncipherment }, wantErr: "key usage 0x5, want digitalSignature (0x1) only"},
		{name: "keyCertSign too", edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, wantErr: "key usage 0x21"},
		{name: "key usage missing", edit: func(c *x509.Certificate) { c.KeyUsage = 0 }, wantErr: "key usage 0x0"},
		{name: "key usage not critical", edit: func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Value: nonCriticalKU})
		}, wantErr: "key usage extension not critical"},
		{name: "EKU missing", edit: func(c *x509.Certificate) { c.ExtKeyUsage = nil }, wantErr: "extended key usage [] (+0 unknown), want exactly serverAuth and clientAuth"},
		{name: "EKU serverAuth only", edit: func(c *x509.Certificate) { c.ExtKeyUsage = c.ExtKeyUsage[:1] }, wantErr: "extended key usage [serverAuth] (+0 unknown)"},
		{name: "EKU any", edit: func(c *x509.Certificate) { c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageAny) }, wantErr: "extended key usage [serverAuth clientAuth anyExtendedKeyUsage]"},
		{name: "SKID missing", edit: func(c *x509.Certificate) { c.SubjectKeyId = nil }, wantErr: "subject key identifier missing"},
		{name: "critical grant extension", edit: func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{criticalGrant} }, wantErr: "unhandled critical extension 2.25.152083343.1"},
		{name: "garbled grant extension", edit: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: grant.OID, Value: []byte{0x30, 0x00}}}
		}, wantErr: "grant: invalid"},
		{name: "outlives the CA", edit: func(c *x509.Certificate) { c.NotAfter = t0.Add(time.Hour + time.Second) }, wantErr: "NotAfter 2026-03-01 13:00:01 +0000 UTC outlives the CA's"},
		{name: "starts before the CA", edit: func(c *x509.Certificate) { c.NotBefore = t0.Add(-time.Minute) }, wantErr: "NotBefore 2026-03-01 11:59:00 +0000 UTC is before the CA's"},
		{name: "empty validity", edit: func(c *x509.Certificate) { c.NotAfter = c.NotBefore }, wantErr: "is not before NotAfter"},
		{name: "wrong signer", edit: func(*x509.Certificate) {}, signer: &impostor, wantErr: "signature does not verify under the CA"},
		{name: "checked against another ID", edit: func(*x509.Certificate) {}, id: other, wantErr: "want \"spiffe://example.org/someone-else\""},
		{name: "checked against the trust domain ID", edit: func(*x509.Certificate) {}, id: td.ID(), wantErr: "is not a workload ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := valid()
			tt.edit(tmpl)
			parent, key := c.Certificate(), c.signer
			if tt.signer != nil {
				parent, key = tt.signer, impostorKey
			}
			leaf := signRaw(t, tmpl, parent, leafKey.Public(), key)
			id := workload
			if !tt.id.IsZero() {
				id = tt.id
			}
			err := CheckSVID(leaf, id, c.Certificate())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSVID of a valid SVID: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "ca: SVID check: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckSVID error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckSVIDOtherCA(t *testing.T) {
	c := newTestCA(t, KeyTypeECP256, time.Hour)
	other := newTestCA(t, KeyTypeECP256, time.Hour)
	svid, err := other.Mint(Request{ID: workload, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSVID(svid.Certificates[0], workload, c.Certificate()); err == nil || !strings.Contains(err.Error(), "authority key identifier") {
		t.Fatalf("CheckSVID of another CA's SVID: %v, want an authority key identifier mismatch", err)
	}
	if err := CheckSVID(nil, workload, c.Certificate()); err == nil {
		t.Fatal("CheckSVID(nil) succeeded")
	}
	if err := CheckSVID(svid.Certificates[0], workload, nil); err == nil {
		t.Fatal("CheckSVID with no CA succeeded")
	}
}

func mustSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
