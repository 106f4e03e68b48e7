package jwtsvid

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
)

// DefaultMaxTTL is the longest a minted token lives when [Config.MaxTTL] is 0.
const DefaultMaxTTL = time.Hour

// Config configures a [Signer]. Only TrustDomain is required.
type Config struct {
	// TrustDomain is the trust domain the signer mints tokens for: every
	// token's sub must be a SPIFFE ID in it.
	TrustDomain spiffeid.TrustDomain
	// Clock returns the current time; iat and exp come from it. Default
	// [time.Now].
	Clock func() time.Time
	// MaxTTL caps every token's lifetime: a request for a longer TTL gets
	// MaxTTL. Default [DefaultMaxTTL]; negative is an error.
	MaxTTL time.Duration
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.TrustDomain.IsZero() {
		return cfg, errors.New("jwtsvid: config: trust domain is required")
	}
	switch {
	case cfg.MaxTTL < 0:
		return cfg, fmt.Errorf("jwtsvid: config: MaxTTL %s is negative", cfg.MaxTTL)
	case cfg.MaxTTL == 0:
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

// Signer mints the JWT-SVIDs of one trust domain with one ECDSA key: P-256
// (alg ES256) or, for a key held elsewhere ([NewSigner]), P-384 (ES384). It
// is immutable once built, and safe for concurrent use when its key is.
type Signer struct {
	td     spiffeid.TrustDomain
	key    *ecdsa.PrivateKey // nil when the key is not in memory (NewSigner)
	pub    *ecdsa.PublicKey
	kid    string
	jws    jose.Signer
	clock  func() time.Time
	maxTTL time.Duration
}

// GenerateSigner returns a Signer for cfg with a fresh P-256 key.
func GenerateSigner(cfg Config) (*Signer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: generating signing key: %w", err)
	}
	return newSigner(cfg, key)
}

// LoadSigner returns a Signer for cfg with the key in keyPEM: one PEM block
// holding an unencrypted ECDSA P-256 private key, PKCS#8 ("PRIVATE KEY", what
// [Signer.MarshalKey] writes) or SEC 1 ("EC PRIVATE KEY").
func LoadSigner(cfg Config, keyPEM []byte) (*Signer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(keyPEM)
	switch {
	case block == nil:
		return nil, errors.New("jwtsvid: parsing signing key: no PEM block found")
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, errors.New("jwtsvid: parsing signing key: more than one PEM block")
	case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED":
		return nil, errors.New("jwtsvid: parsing signing key: the key is encrypted; a JWT signing key is stored plain, mode 0600")
	case block.Type != "PRIVATE KEY" && block.Type != "EC PRIVATE KEY":
		return nil, fmt.Errorf("jwtsvid: parsing signing key: PEM block %q, want \"PRIVATE KEY\" or \"EC PRIVATE KEY\"", block.Type)
	}
	key, err := pemutil.ParseDER(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: parsing signing key: %w", err)
	}
	if ec, ok := key.(*ecdsa.PrivateKey); !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("jwtsvid: signing key is %s, want an ECDSA P-256 private key (ES256)", describeKey(key))
	}
	return newSigner(cfg, key)
}

// NewSigner returns a Signer for cfg that signs with key, a [crypto.Signer]
// whose public key is ECDSA P-256 (tokens get alg ES256) or P-384 (ES384):
// a key held in a PKCS#11 token, for instance. An *ecdsa.PrivateKey is
// signed with in memory, as a key from [LoadSigner] is. Any other signer
// must return ASN.1 DER signatures, as crypto.Signer's ECDSA keys do; each
// is converted to the JWS form (r || s) and verified with the public key
// before a token carries it, so a signer that signs with another key than
// it claims fails closed. [Signer.MarshalKey] works for an
// *ecdsa.PrivateKey only. The Signer uses key until it is dropped: the
// caller keeps it usable (a token open) meanwhile.
func NewSigner(cfg Config, key crypto.Signer) (*Signer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("jwtsvid: signing key is nil")
	}
	return newSigner(cfg, key)
}

// newSigner builds the Signer of key, an *ecdsa.PrivateKey or another
// crypto.Signer of an ECDSA P-256 or P-384 key.
func newSigner(cfg Config, key any) (*Signer, error) {
	var (
		priv    *ecdsa.PrivateKey
		pub     *ecdsa.PublicKey
		jwsKey  any
		keyName = describeKey(key)
	)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k != nil {
			priv, pub, jwsKey = k, &k.PublicKey, k
		}
	case crypto.Signer:
		if p, ok := k.Public().(*ecdsa.PublicKey); ok && p != nil {
			pub = p
			jwsKey = &opaqueSigner{signer: k, pub: p}
			keyName = "a crypto.Signer of " + describeKey(p)
		} else {
			keyName = fmt.Sprintf("a crypto.Signer (%T) of %s", k, describeKey(k.Public()))
		}
	}
	var alg jose.SignatureAlgorithm
	if pub != nil && pub.Curve != nil {
		switch pub.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		}
	}
	if alg == "" {
		return nil, fmt.Errorf("jwtsvid: signing key is %s, want an ECDSA P-256 (ES256) or P-384 (ES384) key", keyName)
	}
	kid, err := jose.Thumbprint(&jose.JSONWebKey{Key: pub})
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: key ID: %w", err)
	}
	jws, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: jwsKey, KeyID: kid}},
		new(jose.SignerOptions).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: building %s signer: %w", alg, err)
	}
	return &Signer{td: cfg.TrustDomain, key: priv, pub: pub, kid: kid, jws: jws, clock: cfg.Clock, maxTTL: cfg.MaxTTL}, nil
}

// TrustDomain returns the trust domain the signer mints tokens for.
func (s *Signer) TrustDomain() spiffeid.TrustDomain { return s.td }

// KeyID returns the kid of every token the signer mints: the RFC 7638
// SHA-256 thumbprint of its public key, base64url without padding.
func (s *Signer) KeyID() string { return s.kid }

// Public returns the signer's public key, an *ecdsa.PublicKey.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// MaxTTL returns the longest lifetime of a token the signer mints.
func (s *Signer) MaxTTL() time.Duration { return s.maxTTL }

// Authority returns the signer's public key under its key ID, for
// [NewBundle].
func (s *Signer) Authority() Authority {
	return Authority{KeyID: s.kid, PublicKey: s.pub}
}

// Bundle returns a new JWT bundle of the signer's trust domain holding its
// public key alone. During a key rotation, build the bundle with
// [NewBundle] instead, from the current signer and the keys still in use.
func (s *Signer) Bundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(s.td, map[string]crypto.PublicKey{s.kid: s.pub})
}

// MarshalKey returns the signer's private key as unencrypted PKCS#8 PEM,
// which [LoadSigner] reads. A key [NewSigner] was given as another
// crypto.Signer than *ecdsa.PrivateKey (in a token) cannot be marshaled.
func (s *Signer) MarshalKey() ([]byte, error) {
	if s.key == nil {
		return nil, errors.New("jwtsvid: marshaling signing key: the key is not in memory (a crypto.Signer such as a PKCS#11 token's key): it cannot be written to a file")
	}
	block, err := pemutil.Serialize(s.key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: marshaling signing key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// Authority is one public key that verifies JWT-SVIDs, and its key ID.
type Authority struct {
	// KeyID is the kid of the tokens the key verifies; not empty.
	KeyID string
	// PublicKey is an *ecdsa.PublicKey on P-256, P-384 or P-521, or an
	// *rsa.PublicKey of at least 2048 bits.
	PublicKey crypto.PublicKey
}

// NewBundle returns the JWT bundle of td holding authorities. It is how a
// key rotation is published: first the next key next to the current one (so
// relying parties learn it before any token it signs), then, once the
// switch is made, the previous key until the last token it signed has
// expired (at most MaxTTL plus [Leeway] after the switch).
//
// It refuses an empty list, an empty key ID, an unsupported key, and one key
// ID used for two different keys; the same authority twice counts once.
func NewBundle(td spiffeid.TrustDomain, authorities ...Authority) (*jwtbundle.Bundle, error) {
	if td.IsZero() {
		return nil, errors.New("jwtsvid: bundle: trust domain is required")
	}
	if len(authorities) == 0 {
		return nil, fmt.Errorf("jwtsvid: bundle of %s: no keys", td)
	}
	keys := make(map[string]crypto.PublicKey, len(authorities))
	for i, a := range authorities {
		if a.KeyID == "" {
			return nil, fmt.Errorf("jwtsvid: bundle of %s: key %d has no key ID", td, i)
		}
		if err := checkAuthorityKey(a.PublicKey); err != nil {
			return nil, fmt.Errorf("jwtsvid: bundle of %s: key %q: %w", td, a.KeyID, err)
		}
		if prev, ok := keys[a.KeyID]; ok {
			if !prev.(interface{ Equal(crypto.PublicKey) bool }).Equal(a.PublicKey) {
				return nil, fmt.Errorf("jwtsvid: bundle of %s: key ID %q names two different keys", td, a.KeyID)
			}
			continue
		}
		keys[a.KeyID] = a.PublicKey
	}
	return jwtbundle.FromJWTAuthorities(td, keys), nil
}

// MarshalJWKS returns b as the RFC 7517 JWK Set that the Workload API's
// FetchJWTBundles sends: one JWK per key, with kid, sorted by kid so that the
// same keys always give the same bytes. Like SPIRE's Workload API, it leaves
// out the SPIFFE bundle's "use": "jwt-svid" parameter, which generic JWKS
// consumers may read as "not a signature key"; a SPIFFE bundle for
// federation (package spiffebundle) sets it.
func MarshalJWKS(b *jwtbundle.Bundle) ([]byte, error) {
	if b == nil {
		return nil, errors.New("jwtsvid: marshaling JWKS: nil bundle")
	}
	authorities := b.JWTAuthorities()
	kids := make([]string, 0, len(authorities))
	for kid := range authorities {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(kids))}
	for _, kid := range kids {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: authorities[kid], KeyID: kid})
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: marshaling JWKS of %s: %w", b.TrustDomain(), err)
	}
	return out, nil
}

// checkAuthorityKey accepts the public keys a JWT-SVID may be verified with.
func checkAuthorityKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k != nil && ecAlg(k.Curve) != "" {
			return nil
		}
	case *rsa.PublicKey:
		if k != nil && k.N != nil && k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fmt.Errorf("unsupported key: %s (want ECDSA P-256, P-384 or P-521, or RSA of at least 2048 bits)", describeKey(pub))
}

// ecAlg returns the JWS algorithm of ECDSA keys on curve, or "".
func ecAlg(curve elliptic.Curve) string {
	switch curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// describeKey names a key's type for errors.
func describeKey(key any) string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k != nil && k.Curve != nil {
			return "an ECDSA " + k.Curve.Params().Name + " private key"
		}
	case *ecdsa.PublicKey:
		if k != nil && k.Curve != nil {
			return "an ECDSA " + k.Curve.Params().Name + " public key"
		}
	case *rsa.PublicKey:
		if k != nil && k.N != nil {
			return fmt.Sprintf("an RSA %d-bit public key", k.N.BitLen())
		}
	case *rsa.PrivateKey:
		if k != nil && k.N != nil {
			return fmt.Sprintf("an RSA %d-bit private key", k.N.BitLen())
		}
	case nil:
		return "nil"
	}
	return fmt.Sprintf("a key of type %T", key)
}
