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

func TestCSRMaker(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := url.Parse("spiffe://bench.test/bench/c0")
	m, err := newCSRMaker(key, id)
	if err != nil {
		t.Fatal(err)
	}
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
