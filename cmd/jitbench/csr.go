package main

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"
)

// csrMaker makes a new CSR for every request of one client, as a
// requester's CLI does, for the one key the client keeps. The request info
// (subject, key, SAN) is the same every time, so it is built once; each CSR
// carries a new ECDSA signature over it. This costs one signature, where
// x509.CreateCertificateRequest also verifies the signature it made: work
// the issuer does anyway, and not what the benchmark measures.
type csrMaker struct {
	key    *ecdsa.PrivateKey
	tbs    []byte   // DER CertificationRequestInfo
	pool   [][]byte // presigned CSRs, handed out by next
	signed int      // CSRs next signed because the pool was empty
}

// oidECDSAWithSHA256 is ecdsa-with-SHA256 (RFC 5758).
var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// newCSRMaker returns a csrMaker for a P-256 key and the SPIFFE ID id.
func newCSRMaker(key *ecdsa.PrivateKey, id *url.URL) (*csrMaker, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	return &csrMaker{key: key, tbs: csr.RawTBSCertificateRequest}, nil
}

// certificationRequest is the PKCS #10 structure (RFC 2986).
type certificationRequest struct {
	Info      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// make returns a new DER CSR.
func (m *csrMaker) make() ([]byte, error) {
	digest := sha256.Sum256(m.tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, m.key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("csr: signing: %w", err)
	}
	der, err := asn1.Marshal(certificationRequest{
		Info:      asn1.RawValue{FullBytes: m.tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("csr: encoding: %w", err)
	}
	return der, nil
}

// presign signs n CSRs ahead of time for next to hand out.
func (m *csrMaker) presign(n int) error {
	m.pool = make([][]byte, 0, n)
	for range n {
		der, err := m.make()
		if err != nil {
			return err
		}
		m.pool = append(m.pool, der)
	}
	return nil
}

// next returns a presigned CSR, each once, or signs a new one (counted in
// m.signed) when none is left or none was presigned.
func (m *csrMaker) next() ([]byte, error) {
	if n := len(m.pool); n > 0 {
		der := m.pool[n-1]
		m.pool[n-1] = nil
		m.pool = m.pool[:n-1]
		return der, nil
	}
	m.signed++
	return m.make()
}
