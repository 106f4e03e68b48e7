package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// CheckSVID checks that leaf is an X.509-SVID for id, issued by the CA
// certificate ca, as jitgrant mints them. It is the re-check [CA.Mint] runs
// on every certificate before returning it. The rules:
//
//   - version 3, a positive serial of at most 20 octets;
//   - exactly one URI SAN, equal to id (a SPIFFE ID with a path), and no
//     DNS, IP or email SAN;
//   - basic constraints present with cA=false;
//   - key usage present, critical, and digitalSignature only;
//   - extended key usage exactly serverAuth and clientAuth;
//   - subject key identifier present; authority key identifier present and
//     equal to ca's subject key identifier (when ca has one); issuer equal
//     to ca's subject;
//   - no critical extension Go does not handle, and a grant extension, if
//     present, non-critical and well-formed ([grant.FromCertificate]);
//   - the signature verifies under ca's public key;
//   - NotBefore before NotAfter, both within ca's validity.
//
// CheckSVID does not look at the time now: x509svid.Verify and the verifier
// do that.
func CheckSVID(leaf *x509.Certificate, id spiffeid.ID, ca *x509.Certificate) error {
	if ca == nil {
		return errors.New("ca: SVID check: no CA certificate")
	}
	return checkSVID(leaf, id, ca, ca.SubjectKeyId, true)
}

// checkSVID is CheckSVID with the expected authority key identifier given
// (a CA certificate without a subject key identifier gets one computed), and
// with the signature check optional for Mint, whose signing already verified
// it.
func checkSVID(leaf *x509.Certificate, id spiffeid.ID, ca *x509.Certificate, aki []byte, verifySignature bool) error {
	if err := checkLeaf(leaf, id); err != nil {
		return fmt.Errorf("ca: SVID check: %w", err)
	}
	if err := checkIssuer(leaf, ca, aki, verifySignature); err != nil {
		return fmt.Errorf("ca: SVID check: %w", err)
	}
	return nil
}

// checkLeaf checks the rules that concern leaf alone.
func checkLeaf(leaf *x509.Certificate, id spiffeid.ID) error {
	switch {
	case leaf == nil:
		return errors.New("no certificate")
	case id.IsZero() || id.Path() == "":
		return fmt.Errorf("SPIFFE ID %q is not a workload ID", id)
	case leaf.Version != 3:
		return fmt.Errorf("version %d, want 3", leaf.Version)
	case leaf.SerialNumber == nil || leaf.SerialNumber.Sign() <= 0:
		return fmt.Errorf("serial number %v is not positive", leaf.SerialNumber)
	case len(leaf.SerialNumber.Bytes()) > 20:
		return fmt.Errorf("serial number of %d octets, more than 20", len(leaf.SerialNumber.Bytes()))
	case len(leaf.URIs) != 1:
		return fmt.Errorf("%d URI SANs, want exactly 1", len(leaf.URIs))
	case len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0:
		return errors.New("DNS, IP or email SAN present")
	}
	got, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return fmt.Errorf("URI SAN %q: %w", leaf.URIs[0], err)
	}
	if got != id {
		return fmt.Errorf("URI SAN %q, want %q", got, id)
	}
	switch {
	case !leaf.BasicConstraintsValid:
		return errors.New("basic constraints missing")
	case leaf.IsCA:
		return errors.New("basic constraints cA=true")
	case leaf.KeyUsage != x509.KeyUsageDigitalSignature:
		return fmt.Errorf("key usage %#x, want digitalSignature (0x1) only", int(leaf.KeyUsage))
	case !keyUsageCritical(leaf):
		return errors.New("key usage extension not critical")
	case len(leaf.ExtKeyUsage) != 2 || len(leaf.UnknownExtKeyUsage) != 0 ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
		return fmt.Errorf("extended key usage %v (+%d unknown), want exactly serverAuth and clientAuth", leaf.ExtKeyUsage, len(leaf.UnknownExtKeyUsage))
	case len(leaf.SubjectKeyId) == 0:
		return errors.New("subject key identifier missing")
	case len(leaf.UnhandledCriticalExtensions) > 0:
		return fmt.Errorf("unhandled critical extension %v", leaf.UnhandledCriticalExtensions[0])
	case !leaf.NotBefore.Before(leaf.NotAfter):
		return fmt.Errorf("NotBefore %s is not before NotAfter %s", leaf.NotBefore, leaf.NotAfter)
	}
	if _, err := grant.FromCertificate(leaf); err != nil && !errors.Is(err, grant.ErrNoGrant) {
		return err
	}
	return nil
}

// checkIssuer checks the rules that tie leaf to ca.
func checkIssuer(leaf, ca *x509.Certificate, aki []byte, verifySignature bool) error {
	switch {
	case len(leaf.AuthorityKeyId) == 0:
		return errors.New("authority key identifier missing")
	case len(aki) > 0 && !bytes.Equal(leaf.AuthorityKeyId, aki):
		return fmt.Errorf("authority key identifier %x, want the CA's %x", leaf.AuthorityKeyId, aki)
	case !bytes.Equal(leaf.RawIssuer, ca.RawSubject):
		return fmt.Errorf("issuer %q is not the CA's subject %q", leaf.Issuer, ca.Subject)
	case leaf.NotBefore.Before(ca.NotBefore):
		return fmt.Errorf("NotBefore %s is before the CA's %s", leaf.NotBefore, ca.NotBefore)
	case leaf.NotAfter.After(ca.NotAfter):
		return fmt.Errorf("NotAfter %s outlives the CA's %s", leaf.NotAfter, ca.NotAfter)
	}
	if verifySignature {
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			return fmt.Errorf("signature does not verify under the CA: %w", err)
		}
	}
	return nil
}

// keyUsageCritical reports whether leaf's key usage extension is critical.
func keyUsageCritical(leaf *x509.Certificate) bool {
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidKeyUsage) {
			return ext.Critical
		}
	}
	return false
}
