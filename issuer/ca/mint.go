package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/x509util"
)

// Request asks the CA for one X.509-SVID.
type Request struct {
	// ID is the SPIFFE ID the SVID names: a workload ID (non-empty path)
	// in the CA's trust domain.
	ID spiffeid.ID
	// PublicKey is the key to certify: ECDSA P-256, P-384 or P-521,
	// Ed25519, or RSA of at least 2048 bits. Nil makes Mint generate a key
	// pair of [Config.LeafKeyType] and return its private key in the SVID.
	PublicKey crypto.PublicKey
	// TTL is how long the SVID is valid from now. It must be positive,
	// unless NotAfter is set and TTL is zero. The SVID never outlives the
	// CA: its NotAfter is the earliest of now+TTL (when TTL is set),
	// NotAfter (when set) and the CA's.
	TTL time.Duration
	// NotAfter, when not zero, is when the SVID ends at the latest, in the
	// whole seconds a certificate holds (truncated to the second): a grant
	// SVID ends exactly with its grant. It must lie a second or more after
	// the minting time (truncated to the second).
	NotAfter time.Time
	// Grant, when not nil, makes a grant SVID: the grant goes into the
	// non-critical extension [grant.OID]. Nil makes an identity SVID.
	Grant *grant.Grant
}

// Mint signs and returns the X.509-SVID req asks for. Certificates holds the
// leaf first, then the CA's chain up to but excluding the root (nothing more
// for a self-signed CA); PrivateKey is the generated key, or nil when
// req.PublicKey was given. A grant SVID's Hint is the grant ID.
//
// The leaf is built as an [x509util.Certificate] value (no text template),
// signed with [x509util.CreateCertificate], re-parsed, and re-checked with
// every rule of [CheckSVID] plus Mint's own: NotBefore at most [MaxBackdate]
// before now, NotAfter at most now+TTL and the requested NotAfter, the
// requested public key, and the
// grant extension holding exactly the requested grant. The signature itself
// is not verified a second time: [x509.CreateCertificate] verifies the
// signature over the bytes it returns with the signer's public key, and
// refuses a signer whose public key is not the CA certificate's, which is
// what [CheckSVID]'s signature check establishes. Verifying again would add
// about half the cost of minting (an ECDSA verification; see BENCHMARKS.md).
func (c *CA) Mint(req Request) (*x509svid.SVID, error) {
	if err := c.checkRequest(req); err != nil {
		return nil, err
	}
	var exts []x509util.Extension
	var grantDER []byte
	if req.Grant != nil {
		ext, err := grant.Extension(req.Grant)
		if err != nil {
			return nil, fmt.Errorf("ca: request: %w", err)
		}
		grantDER = ext.Value
		exts = []x509util.Extension{{ID: x509util.ObjectIdentifier(ext.Id), Critical: ext.Critical, Value: ext.Value}}
	}

	pub := req.PublicKey
	var key crypto.Signer
	if pub == nil {
		var err error
		if key, err = c.leafKey.generate(); err != nil {
			return nil, err
		}
		pub = key.Public()
	}
	skid, err := x509util.GenerateSubjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("ca: request: public key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}

	now := c.clock().UTC().Truncate(time.Second)
	switch {
	case now.Before(c.notBefore):
		return nil, fmt.Errorf("ca: CA chain is not valid before %s (now %s)", c.notBefore.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	case !now.Before(c.notAfter):
		return nil, fmt.Errorf("ca: CA chain expired at %s (now %s)", c.notAfter.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(c.notBefore) {
		notBefore = c.notBefore
	}
	notAfter := c.notAfter
	if req.TTL > 0 && now.Add(req.TTL).Before(notAfter) {
		notAfter = now.Add(req.TTL)
	}
	if !req.NotAfter.IsZero() {
		end := req.NotAfter.UTC().Truncate(time.Second)
		if !end.After(now) {
			return nil, fmt.Errorf("ca: request: NotAfter %s is not a second after now %s", end.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		if end.Before(notAfter) {
			notAfter = end
		}
	}

	tmpl := x509util.Certificate{
		SerialNumber:     x509util.SerialNumber{Int: serial},
		URIs:             x509util.MultiURL{req.ID.URL()},
		NotBefore:        notBefore,
		NotAfter:         notAfter,
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageDigitalSignature),
		ExtKeyUsage:      x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyID:     x509util.SubjectKeyID(skid),
		AuthorityKeyID:   x509util.AuthorityKeyID(c.skid),
		BasicConstraints: &x509util.BasicConstraints{IsCA: false},
		Extensions:       exts,
		PublicKey:        pub,
	}
	leaf, err := x509util.CreateCertificate(tmpl.GetCertificate(), c.cert, pub, c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: signing SVID for %s: %w", req.ID, err)
	}
	if err := c.recheck(leaf, req, pub, now, grantDER); err != nil {
		return nil, fmt.Errorf("ca: minted SVID for %s failed its re-check: %w", req.ID, err)
	}

	svid := &x509svid.SVID{
		ID:           req.ID,
		Certificates: make([]*x509.Certificate, 0, 1+len(c.chain)),
	}
	svid.Certificates = append(append(svid.Certificates, leaf), c.chain...)
	if key != nil {
		svid.PrivateKey = key
	}
	if req.Grant != nil {
		svid.Hint = req.Grant.ID
	}
	return svid, nil
}

// checkRequest refuses a request the CA must not sign.
func (c *CA) checkRequest(req Request) error {
	switch {
	case req.ID.IsZero():
		return errors.New("ca: request: SPIFFE ID is required")
	case req.ID.Path() == "":
		return fmt.Errorf("ca: request: SPIFFE ID %q has no path: an SVID names a workload, not the trust domain", req.ID)
	case !req.ID.MemberOf(c.td):
		return fmt.Errorf("ca: request: SPIFFE ID %q is not in trust domain %q", req.ID, c.td)
	case req.TTL < 0 || (req.TTL == 0 && req.NotAfter.IsZero()):
		return fmt.Errorf("ca: request: TTL %s is not positive", req.TTL)
	}
	if req.PublicKey != nil {
		if err := CheckPublicKey(req.PublicKey); err != nil {
			return fmt.Errorf("ca: request: public key: %w", err)
		}
	}
	return nil
}

// CheckPublicKey accepts the key types and sizes an SVID may certify:
// ECDSA on P-256, P-384 or P-521, Ed25519, or RSA of at least 2048 bits.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			return errors.New("nil ECDSA key")
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %v is not P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key of %d bytes", len(k))
		}
		return nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return errors.New("nil RSA key")
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, fewer than 2048", k.N.BitLen())
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T", pub)
}

// recheck runs CheckSVID's rules (but the signature, see Mint) and Mint's own
// on a freshly minted leaf.
func (c *CA) recheck(leaf *x509.Certificate, req Request, pub crypto.PublicKey, now time.Time, grantDER []byte) error {
	if err := checkSVID(leaf, req.ID, c.cert, c.skid, false); err != nil {
		return err
	}
	switch {
	case leaf.NotBefore.Before(now.Add(-MaxBackdate)):
		return fmt.Errorf("NotBefore %s is more than %s before now %s", leaf.NotBefore, MaxBackdate, now)
	case leaf.NotBefore.After(now):
		return fmt.Errorf("NotBefore %s is after now %s", leaf.NotBefore, now)
	case req.TTL > 0 && leaf.NotAfter.After(now.Add(req.TTL)):
		return fmt.Errorf("NotAfter %s is after now+TTL %s", leaf.NotAfter, now.Add(req.TTL))
	case !req.NotAfter.IsZero() && leaf.NotAfter.After(req.NotAfter):
		return fmt.Errorf("NotAfter %s is after the requested %s", leaf.NotAfter, req.NotAfter)
	case leaf.NotAfter.After(c.notAfter):
		return fmt.Errorf("NotAfter %s is after the CA chain's %s", leaf.NotAfter, c.notAfter)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return errors.New("certified public key is not the requested one")
	}
	var got []byte
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(grant.OID) {
			got = ext.Value
		}
	}
	if !bytes.Equal(got, grantDER) {
		return errors.New("grant extension is not the requested grant")
	}
	return nil
}
