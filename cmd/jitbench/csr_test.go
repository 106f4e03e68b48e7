package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
)

// testMaker returns a csrMaker for a new P-256 key and id, with the key.
func testMaker(t *testing.T, id *url.URL) (*csrMaker, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newCSRMaker(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return m, key
}

func TestCSRMaker(t *testing.T) {
	id, _ := url.Parse("spiffe://bench.test/bench/c0")
	m, key := testMaker(t, id)
	var prev []byte
	for i := range 3 {
		der, err := m.make()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("CSR %d: %v", i, err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Errorf("CSR %d: signature: %v", i, err)
		}
		if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() || !key.PublicKey.Equal(csr.PublicKey) {
			t.Errorf("CSR %d names %v for another key, want %s", i, csr.URIs, id)
		}
		if bytes.Equal(der, prev) {
			t.Errorf("CSR %d repeats the one before", i)
		}
		prev = der
	}
}

func TestCSRMakerPresigned(t *testing.T) {
	id, _ := url.Parse("spiffe://bench.test/bench/c1")
	m, key := testMaker(t, id)
	if err := m.presign(3); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 5 {
		der, err := m.next()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil || csr.CheckSignature() != nil || !key.PublicKey.Equal(csr.PublicKey) {
			t.Fatalf("CSR %d: %v, or not signed by the client's key", i, err)
		}
		if seen[string(der)] {
			t.Errorf("CSR %d was handed out before", i)
		}
		seen[string(der)] = true
		if want := max(0, i-2); m.signed != want {
			t.Errorf("after %d CSRs, %d signed in the cycle, want %d", i+1, m.signed, want)
		}
	}
}
