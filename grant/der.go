package grant

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Marshal validates g and returns the DER encoding of its extension value.
func Marshal(g *Grant) ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(Version)
		addString(b, cbasn1.UTF8String, g.ID)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, s := range g.Scopes {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					addString(b, cbasn1.UTF8String, s.Method)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, r := range s.Resources {
							addString(b, cbasn1.UTF8String, r)
						}
					})
				})
			}
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, a := range g.Approvers {
				addString(b, cbasn1.IA5String, a.String())
			}
		})
		b.AddASN1Uint64(uint64(g.UseLimit))
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("grant: encoding: %w", err)
	}
	if len(der) > MaxExtensionSize {
		return nil, fmt.Errorf("%w: encoding of %d bytes, more than %d", ErrInvalid, len(der), MaxExtensionSize)
	}
	return der, nil
}

// Extension returns g as the non-critical certificate extension the issuer
// adds to a grant SVID.
func Extension(g *Grant) (pkix.Extension, error) {
	der, err := Marshal(g)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: OID, Critical: false, Value: der}, nil
}

// FromCertificate returns the grant in cert, or an error wrapping [ErrNoGrant]
// when cert is a plain identity SVID. A grant extension marked critical, or
// present twice, is an error.
func FromCertificate(cert *x509.Certificate) (*Grant, error) {
	var found *pkix.Extension
	for i := range cert.Extensions {
		ext := &cert.Extensions[i]
		if !ext.Id.Equal(OID) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: grant extension present twice", ErrInvalid)
		}
		found = ext
	}
	if found == nil {
		return nil, ErrNoGrant
	}
	if found.Critical {
		return nil, fmt.Errorf("%w: grant extension marked critical", ErrInvalid)
	}
	return Parse(found.Value)
}

// Parse decodes and validates the DER encoding of a grant extension value.
func Parse(der []byte) (*Grant, error) {
	if len(der) > MaxExtensionSize {
		return nil, fmt.Errorf("%w: encoding of %d bytes, more than %d", ErrInvalid, len(der), MaxExtensionSize)
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, malformed("grant", "not a DER SEQUENCE")
	}
	if !in.Empty() {
		return nil, malformed("grant", fmt.Sprintf("%d trailing bytes after the SEQUENCE", len(in)))
	}
	var version int64
	if !seq.ReadASN1Integer(&version) {
		return nil, malformed("version", "not an INTEGER")
	}
	if version != Version {
		return nil, fmt.Errorf("%w %d (this build reads version %d)", ErrUnsupportedVersion, version, Version)
	}
	g := &Grant{}
	var ok bool
	if g.ID, ok = readString(&seq, cbasn1.UTF8String); !ok {
		return nil, malformed("id", "not a UTF8String")
	}
	var scopes cryptobyte.String
	if !seq.ReadASN1(&scopes, cbasn1.SEQUENCE) {
		return nil, malformed("scopes", "not a SEQUENCE")
	}
	for i := 0; !scopes.Empty(); i++ {
		if i == MaxScopes {
			return nil, fmt.Errorf("%w: more than %d scopes", ErrInvalid, MaxScopes)
		}
		s, err := parseScope(&scopes, i)
		if err != nil {
			return nil, err
		}
		g.Scopes = append(g.Scopes, s)
	}
	var approvers cryptobyte.String
	if !seq.ReadASN1(&approvers, cbasn1.SEQUENCE) {
		return nil, malformed("approvers", "not a SEQUENCE")
	}
	for i := 0; !approvers.Empty(); i++ {
		if i == MaxApprovers {
			return nil, fmt.Errorf("%w: more than %d approvers", ErrInvalid, MaxApprovers)
		}
		s, ok := readString(&approvers, cbasn1.IA5String)
		if !ok {
			return nil, malformed(fmt.Sprintf("approver %d", i), "not an IA5String")
		}
		id, err := parseApprover(s)
		if err != nil {
			return nil, fmt.Errorf("approver %d: %w", i, err)
		}
		g.Approvers = append(g.Approvers, id)
	}
	var limit uint64
	if !seq.ReadASN1Integer(&limit) || limit > 1<<32-1 {
		return nil, malformed("useLimit", "not an INTEGER in 0..4294967295")
	}
	g.UseLimit = uint32(limit)
	if !seq.Empty() {
		return nil, malformed("grant", fmt.Sprintf("%d trailing bytes after useLimit", len(seq)))
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

func parseScope(scopes *cryptobyte.String, i int) (Scope, error) {
	field := fmt.Sprintf("scope %d", i)
	var seq cryptobyte.String
	if !scopes.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return Scope{}, malformed(field, "not a SEQUENCE")
	}
	var s Scope
	var ok bool
	if s.Method, ok = readString(&seq, cbasn1.UTF8String); !ok {
		return Scope{}, malformed(field+" method", "not a UTF8String")
	}
	var res cryptobyte.String
	if !seq.ReadASN1(&res, cbasn1.SEQUENCE) {
		return Scope{}, malformed(field+" resources", "not a SEQUENCE")
	}
	for j := 0; !res.Empty(); j++ {
		if j == MaxResources {
			return Scope{}, fmt.Errorf("%w: %s: more than %d resource patterns", ErrInvalid, field, MaxResources)
		}
		r, ok := readString(&res, cbasn1.UTF8String)
		if !ok {
			return Scope{}, malformed(fmt.Sprintf("%s resource %d", field, j), "not a UTF8String")
		}
		s.Resources = append(s.Resources, r)
	}
	if !seq.Empty() {
		return Scope{}, malformed(field, "trailing bytes after resources")
	}
	return s, nil
}

func addString(b *cryptobyte.Builder, tag cbasn1.Tag, s string) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

// readString reads one string of the given tag. Every field this package
// accepts is ASCII, so the UTF8String and IA5String contents are checked
// later by the field validators.
func readString(s *cryptobyte.String, tag cbasn1.Tag) (string, bool) {
	var v cryptobyte.String
	if !s.ReadASN1(&v, tag) {
		return "", false
	}
	return string(v), true
}

func malformed(field, why string) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, why)
}
