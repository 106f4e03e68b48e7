package jwtsvid

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/jose"
)

// Leeway is the clock skew Validate tolerates: a token is accepted until
// exp + Leeway, and its nbf and iat may lie up to Leeway in the future. It is
// half of go-jose's default (one minute): minted tokens live minutes, and
// issuer and relying parties share a host or an NTP-synchronized network.
const Leeway = 30 * time.Second

// Claims is what Validate read from a valid token.
type Claims struct {
	// ID is the token's SPIFFE ID (sub).
	ID spiffeid.ID
	// Audience is the token's aud, as a list.
	Audience []string
	// Expiry is exp.
	Expiry time.Time
	// IssuedAt is iat; zero when the token has none.
	IssuedAt time.Time
	// TokenID is jti; empty when the token has none.
	TokenID string
	// KeyID is the kid of the key that verified the token.
	KeyID string
	// Grant is the grant the jitgrant claims carry, validated as package
	// grant validates a grant (its Approvers are always empty: tokens do
	// not carry them); nil for an identity token.
	Grant *grant.Grant
	// Raw holds every claim of the payload as decoded JSON (string,
	// float64, bool, nil, []any, map[string]any): what the Workload API's
	// ValidateJWTSVID returns as its claims Struct.
	Raw map[string]any
}

// ValidateOption adjusts [Validate].
type ValidateOption func(*validateConfig)

type validateConfig struct {
	now time.Time
}

// WithTime makes Validate check exp, nbf and iat at now instead of
// [time.Now]: a Workload API server passes its clock's time.
func WithTime(now time.Time) ValidateOption {
	return func(c *validateConfig) { c.now = now }
}

// allowedAlgs are the JWS algorithms the JWT-SVID specification allows.
var allowedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"PS256": true, "PS384": true, "PS512": true,
}

// Validate checks token, a JWT-SVID in JWS Compact Serialization, as a
// relying party identified by audience would, verifying its signature with
// the bundle of its subject's trust domain in bundles, and returns its
// claims. The package doc lists every check; the error names the first that
// fails.
func Validate(token, audience string, bundles jwtbundle.Source, opts ...ValidateOption) (*Claims, error) {
	var cfg validateConfig
	for _, o := range opts {
		o(&cfg)
	}
	now := cfg.now
	if now.IsZero() {
		now = time.Now()
	}
	switch {
	case audience == "":
		return nil, errors.New("jwtsvid: validate: audience is required")
	case bundles == nil:
		return nil, errors.New("jwtsvid: validate: no bundle source")
	}

	hdrSeg, paySeg, err := splitCompact(token)
	if err != nil {
		return nil, err
	}
	_, hdr, err := decodeSegment(hdrSeg, "header")
	if err != nil {
		return nil, err
	}
	alg, kid, err := checkHeader(hdr)
	if err != nil {
		return nil, err
	}
	payloadJSON, raw, err := decodeSegment(paySeg, "payload")
	if err != nil {
		return nil, err
	}
	sub, ok := raw["sub"].(string)
	if !ok || sub == "" {
		return nil, errors.New("jwtsvid: token: sub claim missing or not a string")
	}
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: token: sub %q is not a SPIFFE ID: %w", truncate(sub), err)
	}

	// The key: from the bundle of the subject's trust domain, under kid.
	td := id.TrustDomain()
	bundle, err := bundles.GetJWTBundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: token: no JWT bundle for trust domain %q of %s: %w", td, id, err)
	}
	if bundle == nil || bundle.TrustDomain() != td {
		return nil, fmt.Errorf("jwtsvid: token: the bundle source returned no bundle of trust domain %q", td)
	}
	pub, ok := bundle.FindJWTAuthority(kid)
	if !ok {
		return nil, fmt.Errorf("jwtsvid: token: no key %q in the JWT bundle of %q", truncate(kid), td)
	}
	if err := checkKeyFits(alg, pub); err != nil {
		return nil, fmt.Errorf("jwtsvid: token: key %q of %q: %w", kid, td, err)
	}

	// The signature, by go-jose (through go.step.sm/crypto/jose), over
	// the very header and payload checked above.
	jws, err := jose.ParseJWS(token)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: token: %w", jose.TrimPrefix(err))
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("jwtsvid: token: %d signatures, want 1", len(jws.Signatures))
	}
	if h := jws.Signatures[0].Protected; string(h.Algorithm) != alg || h.KeyID != kid {
		return nil, errors.New("jwtsvid: token: header parsed two ways")
	}
	verified, err := jws.Verify(pub)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: token: signature does not verify with key %q of %q", kid, td)
	}
	if !bytes.Equal(verified, payloadJSON) {
		return nil, errors.New("jwtsvid: token: payload parsed two ways")
	}

	c := &Claims{ID: id, KeyID: kid, Raw: raw}
	if err := c.readRegistered(raw, audience, now); err != nil {
		return nil, err
	}
	if c.Grant, err = readGrant(raw); err != nil {
		return nil, err
	}
	return c, nil
}

// splitCompact returns the header and payload segments of a JWS in compact
// serialization: three non-empty segments of the base64url alphabet joined
// by dots, and nothing else (no whitespace, no JSON serialization).
func splitCompact(token string) (header, payload string, err error) {
	switch {
	case token == "":
		return "", "", errors.New("jwtsvid: token: empty")
	case len(token) > MaxTokenSize:
		return "", "", fmt.Errorf("jwtsvid: token: %d bytes, more than %d", len(token), MaxTokenSize)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", fmt.Errorf("jwtsvid: token: character %q at %d is not in JWS Compact Serialization (base64url and dots)", c, i)
		}
	}
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		return "", "", fmt.Errorf("jwtsvid: token: %d dot-separated segments, want 3 (header.payload.signature)", len(segs))
	}
	for i, name := range []string{"header", "payload", "signature"} {
		if segs[i] == "" {
			return "", "", fmt.Errorf("jwtsvid: token: empty %s", name)
		}
	}
	return segs[0], segs[1], nil
}

// checkHeader checks the protected header of a JWT-SVID and returns its alg
// and kid.
func checkHeader(hdr map[string]any) (alg, kid string, err error) {
	var extra []string
	for name := range hdr {
		if name != "alg" && name != "kid" && name != "typ" {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return "", "", fmt.Errorf("jwtsvid: token: header parameter %q is not allowed in a JWT-SVID (only alg, kid and typ)", truncate(extra[0]))
	}
	alg, _ = hdr["alg"].(string)
	if !allowedAlgs[alg] {
		return "", "", fmt.Errorf("jwtsvid: token: alg %q is not allowed (want RS, ES or PS with 256, 384 or 512)", truncate(fmt.Sprint(hdr["alg"])))
	}
	kid, _ = hdr["kid"].(string)
	if kid == "" {
		return "", "", errors.New("jwtsvid: token: header has no kid")
	}
	if typ, ok := hdr["typ"]; ok && typ != "JWT" && typ != "JOSE" {
		return "", "", fmt.Errorf("jwtsvid: token: typ %q is neither JWT nor JOSE", truncate(fmt.Sprint(typ)))
	}
	return alg, kid, nil
}

// checkKeyFits reports whether pub can verify signatures of alg.
func checkKeyFits(alg string, pub crypto.PublicKey) error {
	if err := checkAuthorityKey(pub); err != nil {
		return err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if want := ecAlg(k.Curve); alg != want {
			return fmt.Errorf("alg %s does not fit %s (%s)", alg, describeKey(pub), want)
		}
	case *rsa.PublicKey:
		if alg[0] != 'R' && alg[0] != 'P' {
			return fmt.Errorf("alg %s does not fit %s (RS* or PS*)", alg, describeKey(pub))
		}
	}
	return nil
}

// readRegistered reads sub's companions (aud, exp, nbf, iat, jti) from raw
// and checks them at now for audience.
func (c *Claims) readRegistered(raw map[string]any, audience string, now time.Time) error {
	switch aud := raw["aud"].(type) {
	case string:
		c.Audience = []string{aud}
	case []any:
		c.Audience = make([]string, len(aud))
		for i, a := range aud {
			s, ok := a.(string)
			if !ok {
				return fmt.Errorf("jwtsvid: token: aud element %d is not a string", i)
			}
			c.Audience[i] = s
		}
	case nil:
		return errors.New("jwtsvid: token: aud claim missing")
	default:
		return errors.New("jwtsvid: token: aud claim is neither a string nor an array")
	}
	if len(c.Audience) == 0 {
		return errors.New("jwtsvid: token: aud claim is empty")
	}

	var err error
	if c.Expiry, err = numericDate(raw, "exp"); err != nil {
		return err
	}
	if c.Expiry.IsZero() {
		return errors.New("jwtsvid: token: exp claim missing")
	}
	if !now.Before(c.Expiry.Add(Leeway)) {
		return fmt.Errorf("jwtsvid: token: expired at %s (now %s, leeway %s)", c.Expiry.Format(time.RFC3339), now.UTC().Format(time.RFC3339), Leeway)
	}
	nbf, err := numericDate(raw, "nbf")
	if err != nil {
		return err
	}
	if now.Add(Leeway).Before(nbf) {
		return fmt.Errorf("jwtsvid: token: not valid before %s (now %s, leeway %s)", nbf.Format(time.RFC3339), now.UTC().Format(time.RFC3339), Leeway)
	}
	if c.IssuedAt, err = numericDate(raw, "iat"); err != nil {
		return err
	}
	if now.Add(Leeway).Before(c.IssuedAt) {
		return fmt.Errorf("jwtsvid: token: issued in the future, at %s (now %s, leeway %s)", c.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), Leeway)
	}
	if jti, ok := raw["jti"]; ok {
		if c.TokenID, ok = jti.(string); !ok {
			return errors.New("jwtsvid: token: jti claim is not a string")
		}
	}

	for _, a := range c.Audience {
		if a == audience {
			return nil
		}
	}
	return fmt.Errorf("jwtsvid: token: audience %q is not among the token's %s", truncate(audience), truncate(fmt.Sprintf("%q", c.Audience)))
}

// maxNumericDate bounds exp, nbf and iat: the year 9999 in seconds.
const maxNumericDate = 253402300799

// numericDate reads the NumericDate claim name: zero time when absent.
func numericDate(raw map[string]any, name string) (time.Time, error) {
	v, ok := raw[name]
	if !ok {
		return time.Time{}, nil
	}
	f, ok := v.(float64)
	if !ok || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("jwtsvid: token: %s claim is not a number of seconds between 0 and %d", name, int64(maxNumericDate))
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
}

// truncate shortens attacker-chosen strings quoted in errors.
func truncate(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
