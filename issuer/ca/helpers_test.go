package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// t0 is the fixed "now" of the tests: whole seconds, as X.509 times are.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	otherTD  = spiffeid.RequireTrustDomainFromString("other.example")
	workload = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/ledger-client")
)

var keyTypes = []KeyType{KeyTypeECP256, KeyTypeECP384, KeyTypeEd25519}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// newTestCA generates a CA of key type kt, valid for ttl from t0.
func newTestCA(t testing.TB, kt KeyType, ttl time.Duration) *CA {
	t.Helper()
	c, err := Generate(Config{TrustDomain: td, KeyType: kt, TTL: ttl, Clock: fixedClock(t0)})
	if err != nil {
		t.Fatalf("Generate(%s): %v", kt, err)
	}
	return c
}

// withClock returns a copy of c reading time from clock.
func withClock(c *CA, clock func() time.Time) *CA {
	cc := *c
	cc.clock = clock
	return &cc
}

func newKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	k, err := kt.generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleGrant() *grant.Grant {
	return &grant.Grant{
		ID: "req-01HX3Z",
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/GetBalance"},
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}},
		},
		Approvers: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/person/alice")},
		UseLimit:  1,
	}
}

// signRaw signs tmpl with parent and key via the standard library alone and
// parses the result: the way tests craft certificates Mint would never make.
func signRaw(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// caTemplate is a CA certificate template valid over [from, to).
func caTemplate(cn string, serial int64, from, to time.Time, uris ...*url.URL) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             from,
		NotAfter:              to,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  uris,
	}
}
