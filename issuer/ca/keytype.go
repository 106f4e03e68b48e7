package ca

import (
	"crypto"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
)

// KeyType names a key algorithm the CA generates: for its own key
// ([Generate]) and for SVID key pairs ([Request.PublicKey] nil).
type KeyType string

// The key types a CA generates. The zero value means [KeyTypeECP256].
const (
	KeyTypeECP256  KeyType = "ec-p256" // ECDSA on NIST P-256, signed with SHA-256
	KeyTypeECP384  KeyType = "ec-p384" // ECDSA on NIST P-384, signed with SHA-384
	KeyTypeEd25519 KeyType = "ed25519" // Ed25519
)

// validKeyTypes lists the accepted names for error messages.
const validKeyTypes = `"ec-p256", "ec-p384" or "ed25519"`

// ParseKeyType returns the KeyType named s (case-insensitive), or an error
// naming the valid values.
func ParseKeyType(s string) (KeyType, error) {
	k := KeyType(strings.ToLower(strings.TrimSpace(s)))
	switch k {
	case KeyTypeECP256, KeyTypeECP384, KeyTypeEd25519:
		return k, nil
	}
	return "", fmt.Errorf("ca: %w", unknownKeyType(s))
}

// orDefault returns k, or KeyTypeECP256 when k is empty.
func (k KeyType) orDefault() KeyType {
	if k == "" {
		return KeyTypeECP256
	}
	return k
}

// check reports whether k (after defaulting) is a known key type.
func (k KeyType) check() error {
	switch k.orDefault() {
	case KeyTypeECP256, KeyTypeECP384, KeyTypeEd25519:
		return nil
	}
	return unknownKeyType(string(k))
}

func unknownKeyType(s string) error {
	return fmt.Errorf("unknown key type %q: want %s", s, validKeyTypes)
}

// generate returns a fresh key pair of type k.
func (k KeyType) generate() (crypto.Signer, error) {
	var kty, crv string
	switch k.orDefault() {
	case KeyTypeECP256:
		kty, crv = "EC", "P-256"
	case KeyTypeECP384:
		kty, crv = "EC", "P-384"
	case KeyTypeEd25519:
		kty, crv = "OKP", "Ed25519"
	default:
		return nil, fmt.Errorf("ca: %w", unknownKeyType(string(k)))
	}
	s, err := keyutil.GenerateSigner(kty, crv, 0)
	if err != nil {
		return nil, fmt.Errorf("ca: generating %s key: %w", k.orDefault(), err)
	}
	return s, nil
}
