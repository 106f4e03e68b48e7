package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"
)

// Time bounds of the certificates a CA signs.
const (
	// Backdate is how long before the minting time a certificate's
	// NotBefore lies, so that verifiers whose clocks lag a little still
	// accept it. NotBefore is never earlier than the CA's own NotBefore.
	Backdate = 10 * time.Second
	// MaxBackdate is the most a minted SVID's NotBefore may lie before the
	// minting time; Mint's re-check refuses anything older.
	MaxBackdate = 30 * time.Second
	// DefaultTTL is the validity of a generated CA when [Config.TTL] is 0.
	DefaultTTL = 365 * 24 * time.Hour
)

// Config configures a CA. Only TrustDomain is required.
type Config struct {
	// TrustDomain is the trust domain the CA signs for. Minted SVIDs must
	// name a SPIFFE ID in it, and a loaded CA certificate's URI SAN, if
	// any, must be its SPIFFE ID.
	TrustDomain spiffeid.TrustDomain
	// KeyType is the CA's key type for [Generate]; [Load] ignores it.
	// Default [KeyTypeECP256].
	KeyType KeyType
	// LeafKeyType is the type of the key pairs Mint generates when a
	// [Request] has no PublicKey. Default [KeyTypeECP256].
	LeafKeyType KeyType
	// TTL is the validity of a generated CA; [Load] ignores it. Default
	// [DefaultTTL].
	TTL time.Duration
	// Clock returns the current time; every validity computation and check
	// goes through it. Default [time.Now].
	Clock func() time.Time
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.TrustDomain.IsZero() {
		return cfg, errors.New("ca: config: trust domain is required")
	}
	if err := cfg.KeyType.check(); err != nil {
		return cfg, fmt.Errorf("ca: config: KeyType: %w", err)
	}
	if err := cfg.LeafKeyType.check(); err != nil {
		return cfg, fmt.Errorf("ca: config: LeafKeyType: %w", err)
	}
	cfg.KeyType = cfg.KeyType.orDefault()
	cfg.LeafKeyType = cfg.LeafKeyType.orDefault()
	switch {
	case cfg.TTL < 0:
		return cfg, fmt.Errorf("ca: config: TTL %s is negative", cfg.TTL)
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

// CA is the certificate authority of one trust domain. It is immutable once
// built, and safe for concurrent use.
type CA struct {
	td     spiffeid.TrustDomain
	signer crypto.Signer
	cert   *x509.Certificate // signs the SVIDs
	// all is cert followed by its chain as loaded, up to and including a
	// self-signed root: what Marshal writes.
	all []*x509.Certificate
	// chain is what an SVID carries after its leaf: all without the root.
	chain []*x509.Certificate
	// roots is the trust anchor a verifier needs: the last of all.
	roots []*x509.Certificate
	// skid is cert's key identifier, every leaf's AuthorityKeyId.
	skid []byte
	// notBefore and notAfter bound the validity of every certificate in
	// all: no leaf may start earlier or end later.
	notBefore, notAfter time.Time
	leafKey             KeyType
	clock               func() time.Time
	// closer releases the token holding signer; nil for a key in memory.
	closer io.Closer
}

// Generate returns a new self-signed CA for cfg.TrustDomain: a fresh key of
// cfg.KeyType, a certificate with cA=true (path length 0: it signs leaves
// only), key usage keyCertSign and cRLSign, the URI SAN spiffe://<trust
// domain>, a random 128-bit serial, and validity from [Backdate] before now to
// now + cfg.TTL.
func Generate(cfg Config) (*CA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	signer, err := cfg.KeyType.generate()
	if err != nil {
		return nil, err
	}
	return generate(cfg, signer)
}

// generate is Generate with the CA key given; cfg has its defaults.
func generate(cfg Config, signer crypto.Signer) (*CA, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	skid, err := x509util.GenerateSubjectKeyID(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: CA key identifier: %w", err)
	}
	now := cfg.Clock().UTC().Truncate(time.Second)
	tmpl := x509util.Certificate{
		Subject: x509util.Subject{
			Organization: x509util.MultiString{"jitgrant"},
			CommonName:   "jitgrant CA " + cfg.TrustDomain.Name(),
		},
		SerialNumber:     x509util.SerialNumber{Int: serial},
		URIs:             x509util.MultiURL{cfg.TrustDomain.ID().URL()},
		NotBefore:        now.Add(-Backdate),
		NotAfter:         now.Add(cfg.TTL),
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageCertSign | x509.KeyUsageCRLSign),
		BasicConstraints: &x509util.BasicConstraints{IsCA: true, MaxPathLen: 0},
		SubjectKeyID:     x509util.SubjectKeyID(skid),
		PublicKey:        signer.Public(),
	}
	x := tmpl.GetCertificate()
	cert, err := x509util.CreateCertificate(x, x, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: self-signing CA certificate: %w", err)
	}
	return newCA(cfg, []*x509.Certificate{cert}, signer)
}

// newCA checks that certs (a CA certificate followed by its chain) and
// signer form a usable CA for cfg at cfg.Clock() and builds it.
func newCA(cfg Config, certs []*x509.Certificate, signer crypto.Signer) (*CA, error) {
	if len(certs) == 0 {
		return nil, errors.New("ca: no CA certificate")
	}
	cert := certs[0]
	if err := checkCACert(cert, "CA certificate"); err != nil {
		return nil, err
	}
	if err := checkCAURIs(cert, cfg.TrustDomain); err != nil {
		return nil, err
	}
	if err := keyutil.VerifyPair(cert.PublicKey, signer); err != nil {
		return nil, fmt.Errorf("ca: CA key does not match the CA certificate: %w", err)
	}
	c := &CA{
		td:        cfg.TrustDomain,
		signer:    signer,
		cert:      cert,
		all:       certs,
		skid:      cert.SubjectKeyId,
		notBefore: cert.NotBefore,
		notAfter:  cert.NotAfter,
		leafKey:   cfg.LeafKeyType,
		clock:     cfg.Clock,
	}
	if err := c.checkChain(); err != nil {
		return nil, err
	}
	if len(c.skid) == 0 {
		skid, err := x509util.GenerateSubjectKeyID(cert.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("ca: CA key identifier: %w", err)
		}
		c.skid = skid
	}
	now := cfg.Clock()
	switch {
	case now.Before(c.notBefore):
		return nil, fmt.Errorf("ca: CA chain is not valid before %s (now %s)", c.notBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !now.Before(c.notAfter):
		return nil, fmt.Errorf("ca: CA chain expired at %s (now %s)", c.notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// A trial SVID, verified as a relying party would, catches what the
	// checks above do not: path length and name constraints of the
	// upstream chain, unsupported algorithms.
	probeID, err := spiffeid.FromPath(c.td, "/jitgrant/ca-probe")
	if err != nil {
		return nil, fmt.Errorf("ca: CA probe ID: %w", err)
	}
	probe, err := c.Mint(Request{ID: probeID, TTL: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("%w (minting a trial SVID)", err)
	}
	if _, _, err := x509svid.Verify(probe.Certificates, c.Bundle(), x509svid.WithTime(now)); err != nil {
		return nil, fmt.Errorf("ca: verifying CA chain: an SVID it signs does not verify: %w", err)
	}
	return c, nil
}

// checkChain checks that c.all links up, certificate by certificate, to a
// self-signed root, and sets chain, roots, notBefore and notAfter.
func (c *CA) checkChain() error {
	for i, cert := range c.all {
		if i > 0 {
			name := fmt.Sprintf("chain certificate %d (%s)", i, cert.Subject)
			if err := checkCACert(cert, name); err != nil {
				return err
			}
			if err := c.all[i-1].CheckSignatureFrom(cert); err != nil {
				return fmt.Errorf("ca: %s did not sign the certificate before it: %w", name, err)
			}
		}
		if cert.NotBefore.After(c.notBefore) {
			c.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(c.notAfter) {
			c.notAfter = cert.NotAfter
		}
		if bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil {
			if i != len(c.all)-1 {
				return fmt.Errorf("ca: certificate %d (%s) is a self-signed root but more certificates follow it", i, cert.Subject)
			}
			c.chain = c.all[:i]
			c.roots = c.all[i:]
			return nil
		}
	}
	last := c.all[len(c.all)-1]
	return fmt.Errorf("ca: CA chain ends with %q, issued by %q, which is not a self-signed root: append the upstream root certificate to the certificate PEM", last.Subject, last.Issuer)
}

// checkCACert checks that cert may sign certificates.
func checkCACert(cert *x509.Certificate, name string) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("ca: %s is not a CA certificate (basic constraints cA=true missing)", name)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("ca: %s lacks the keyCertSign key usage", name)
	}
	return nil
}

// checkCAURIs checks that the CA certificate names no SPIFFE ID but td's.
func checkCAURIs(cert *x509.Certificate, td spiffeid.TrustDomain) error {
	for _, u := range cert.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil || id != td.ID() {
			return fmt.Errorf("ca: CA certificate URI SAN %q is not the trust domain's SPIFFE ID %q", u, td.ID())
		}
	}
	return nil
}

// TrustDomain returns the trust domain the CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Certificate returns the CA certificate that signs SVIDs. Callers must not
// modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Bundle returns a new X.509 bundle of the trust domain holding the root a
// verifier trusts: the CA certificate itself when self-signed, else the root
// at the end of its chain.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, c.roots)
}

// newSerial returns a random, positive serial number of up to 128 bits.
func newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ca: serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}
