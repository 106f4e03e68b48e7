package jwtsvid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"go.step.sm/crypto/jose"
)

// opaqueSigner signs JWS payloads with an ECDSA key held behind a
// crypto.Signer (a PKCS#11 token's key): it hashes the signing input, has
// the signer sign the digest, turns the ASN.1 DER signature into JWS's
// fixed-size r || s (RFC 7518, section 3.4), and verifies it with the public
// key before returning it.
type opaqueSigner struct {
	signer crypto.Signer
	pub    *ecdsa.PublicKey
}

// Public returns the public key, without key ID (the JWK that wraps the
// signer carries it).
func (o *opaqueSigner) Public() *jose.JSONWebKey { return &jose.JSONWebKey{Key: o.pub} }

// Algs returns the one algorithm of the key's curve.
func (o *opaqueSigner) Algs() []jose.SignatureAlgorithm {
	if alg := ecAlg(o.pub.Curve); alg != "" {
		return []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}
	}
	return nil
}

// SignPayload signs payload, the JWS signing input, with alg.
func (o *opaqueSigner) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if want := ecAlg(o.pub.Curve); string(alg) != want {
		return nil, fmt.Errorf("jwtsvid: algorithm %s does not fit the key (%s)", alg, want)
	}
	hash := crypto.SHA256
	switch alg {
	case jose.ES384:
		hash = crypto.SHA384
	case jose.ES512:
		hash = crypto.SHA512
	}
	h := hash.New()
	h.Write(payload)
	digest := h.Sum(nil)
	der, err := o.signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: the signing key failed to sign: %w", err)
	}
	sig, err := rawECDSASignature(der, (o.pub.Curve.Params().BitSize+7)/8)
	if err != nil {
		return nil, err
	}
	if !ecdsa.VerifyASN1(o.pub, digest, der) {
		return nil, errors.New("jwtsvid: the signing key's signature does not verify with its public key (is the key the signer names the one it signs with?)")
	}
	return sig, nil
}

// rawECDSASignature converts der, an ASN.1 DER ECDSA-Sig-Value (SEQUENCE
// of INTEGER r and s), to r || s, each big-endian and left-padded to size
// bytes. It refuses trailing data, and r or s that is not positive or does
// not fit size bytes.
func rawECDSASignature(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	switch {
	case err != nil:
		return nil, fmt.Errorf("jwtsvid: the signing key returned a signature that is not ASN.1 DER (r, s): %w", err)
	case len(rest) > 0:
		return nil, fmt.Errorf("jwtsvid: the signing key returned a signature with %d bytes after its ASN.1 DER", len(rest))
	}
	out := make([]byte, 2*size)
	for i, v := range []*big.Int{sig.R, sig.S} {
		if v.Sign() <= 0 || (v.BitLen()+7)/8 > size {
			return nil, fmt.Errorf("jwtsvid: the signing key returned a signature whose %s is out of range for a %d-byte curve", [...]string{"r", "s"}[i], size)
		}
		v.FillBytes(out[i*size : (i+1)*size])
	}
	return out, nil
}
