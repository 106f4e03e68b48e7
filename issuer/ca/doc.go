// Package ca is the jitgrant trust-domain certificate authority: it holds the
// CA certificate and key of one SPIFFE trust domain and mints X.509-SVIDs
// for workloads of that trust domain.
//
// A CA is either generated ([Generate]: a self-signed root with an ECDSA
// P-256, P-384 or Ed25519 key) or loaded from PEM ([Load], [LoadFiles]): a CA
// certificate, optionally followed by its chain up to an upstream root, and
// its private key, optionally encrypted (PKCS#8 PBES2). [CA.Marshal] and
// [CA.WriteFiles] save it again. The key may instead live in a PKCS#11
// token ([GenerateKMS], [LoadKMS]: step-ca's pkcs11: URIs), where it is made
// and used without ever leaving it; such a CA saves its certificate only
// ([CA.WriteCertFile]) and holds the token open until [CA.Close].
//
// [CA.Mint] issues two kinds of SVID for a SPIFFE ID of the trust domain:
//
//   - an identity SVID, which proves who the workload is;
//   - a grant SVID, which also carries a [grant.Grant] in the private,
//     non-critical extension [grant.OID]; its validity is the grant's.
//
// Every minted certificate follows the SPIFFE X509-SVID rules and jitgrant's
// own: exactly one URI SAN (the SPIFFE ID) and no other SAN, basic
// constraints with cA=false, a critical key usage of digitalSignature only,
// extended key usage serverAuth and clientAuth, a random positive 128-bit
// serial, subject and authority key identifiers, NotBefore backdated by
// [Backdate] (never before the CA's NotBefore) and a NotAfter that never
// passes the CA's nor any certificate of its chain. The subject is empty, so
// the SAN extension is critical (RFC 5280, section 4.2.1.6).
//
// Mint re-parses every certificate it signs and re-checks it with the same
// rules [CheckSVID] applies before handing it out; a certificate that fails is
// an error, never a returned SVID. The one check Mint does not repeat is the
// signature: [crypto/x509.CreateCertificate] already verifies it, over the
// very bytes returned, with the CA's public key (see [CA.Mint]).
//
// All time logic goes through [Config.Clock]; a CA is safe for concurrent use.
package ca
