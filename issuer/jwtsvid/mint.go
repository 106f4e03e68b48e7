package jwtsvid

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bounds on what Mint signs. Validate accepts tokens beyond the audience
// bounds (other issuers may mint them) but never beyond MaxTokenSize.
const (
	// MaxAudiences is the most audiences one token may name. The JWT-SVID
	// specification strongly recommends one: every audience can replay the
	// token to every other.
	MaxAudiences = 16
	// MaxAudienceLength is the longest audience, in bytes.
	MaxAudienceLength = 1024
	// MaxTokenSize is the longest token, in bytes, that Mint returns and
	// Validate reads.
	MaxTokenSize = 64 << 10
)

// Names of the private claims of a grant's token: see the package doc.
const (
	ClaimGrantID  = "jitgrant_grant_id"
	ClaimScopes   = "jitgrant_scopes"
	ClaimUseLimit = "jitgrant_use_limit"
)

// Request asks a [Signer] for one JWT-SVID.
type Request struct {
	// ID is the SPIFFE ID the token names (sub): a workload ID, with a
	// path, in the signer's trust domain.
	ID spiffeid.ID
	// Audience lists the token's audiences (aud): 1 to [MaxAudiences]
	// distinct, non-empty strings of at most [MaxAudienceLength] bytes.
	Audience []string
	// TTL is how long the token is valid from now; it must be at least a
	// second (exp is in whole seconds). A TTL over the signer's MaxTTL gets
	// MaxTTL.
	TTL time.Duration
	// NotAfter, if not zero, caps exp: a grant's token passes the grant's
	// expiry here so that the token never outlives the grant. It must lie
	// at least a second after now.
	NotAfter time.Time
	// Grant, when not nil, makes a grant's token: the grant's ID, scopes
	// and use limit go into the jitgrant claims. Nil makes an identity
	// token.
	Grant *grant.Grant
}

// payload is the JSON of a minted token's claims, in the order written.
type payload struct {
	Subject  string       `json:"sub"`
	Audience []string     `json:"aud"`
	Expiry   int64        `json:"exp"`
	IssuedAt int64        `json:"iat"`
	ID       string       `json:"jti"`
	GrantID  string       `json:"jitgrant_grant_id,omitempty"`
	Scopes   []scopeClaim `json:"jitgrant_scopes,omitempty"`
	UseLimit uint32       `json:"jitgrant_use_limit,omitempty"`
}

// scopeClaim is one element of the jitgrant_scopes claim.
type scopeClaim struct {
	Method    string   `json:"method"`
	Resources []string `json:"resources"`
}

// Mint signs the JWT-SVID req asks for and returns it with its expiry (exp).
// iat is now, in whole seconds; exp is iat + min(req.TTL, MaxTTL), no later
// than req.NotAfter.
func (s *Signer) Mint(req Request) (token string, exp time.Time, err error) {
	if err := s.checkRequest(req); err != nil {
		return "", time.Time{}, err
	}
	now := s.clock().UTC().Truncate(time.Second)
	exp = now.Add(min(req.TTL, s.maxTTL)).Truncate(time.Second)
	if !req.NotAfter.IsZero() && req.NotAfter.Before(exp) {
		exp = req.NotAfter.UTC().Truncate(time.Second)
		if !exp.After(now) {
			return "", time.Time{}, fmt.Errorf("jwtsvid: request: NotAfter %s is not a second after now %s", req.NotAfter.UTC().Format(time.RFC3339Nano), now.Format(time.RFC3339))
		}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("jwtsvid: token ID: %w", err)
	}
	p := payload{
		Subject:  req.ID.String(),
		Audience: req.Audience,
		Expiry:   exp.Unix(),
		IssuedAt: now.Unix(),
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	if g := req.Grant; g != nil {
		p.GrantID = g.ID
		p.UseLimit = g.UseLimit
		p.Scopes = make([]scopeClaim, len(g.Scopes))
		for i, sc := range g.Scopes {
			p.Scopes[i] = scopeClaim{Method: sc.Method, Resources: sc.Resources}
			if sc.Resources == nil {
				p.Scopes[i].Resources = []string{}
			}
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtsvid: encoding claims for %s: %w", req.ID, err)
	}
	jws, err := s.jws.Sign(body)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtsvid: signing token for %s: %w", req.ID, err)
	}
	token, err = jws.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtsvid: serializing token for %s: %w", req.ID, err)
	}
	if len(token) > MaxTokenSize {
		return "", time.Time{}, fmt.Errorf("jwtsvid: request: token for %s is %d bytes, more than %d", req.ID, len(token), MaxTokenSize)
	}
	return token, exp, nil
}

// checkRequest refuses a request the signer must not sign.
func (s *Signer) checkRequest(req Request) error {
	switch {
	case req.ID.IsZero():
		return errors.New("jwtsvid: request: SPIFFE ID is required")
	case req.ID.Path() == "":
		return fmt.Errorf("jwtsvid: request: SPIFFE ID %q has no path: a JWT-SVID names a workload, not the trust domain", req.ID)
	case !req.ID.MemberOf(s.td):
		return fmt.Errorf("jwtsvid: request: SPIFFE ID %q is not in trust domain %q", req.ID, s.td)
	case len(req.Audience) == 0:
		return errors.New("jwtsvid: request: no audience (a JWT-SVID must name at least one)")
	case len(req.Audience) > MaxAudiences:
		return fmt.Errorf("jwtsvid: request: %d audiences, more than %d", len(req.Audience), MaxAudiences)
	case req.TTL < time.Second:
		return fmt.Errorf("jwtsvid: request: TTL %s is less than a second", req.TTL)
	}
	for i, a := range req.Audience {
		switch {
		case a == "":
			return fmt.Errorf("jwtsvid: request: audience %d is empty", i)
		case len(a) > MaxAudienceLength:
			return fmt.Errorf("jwtsvid: request: audience %d is %d bytes, more than %d", i, len(a), MaxAudienceLength)
		}
		for j := range i {
			if req.Audience[j] == a {
				return fmt.Errorf("jwtsvid: request: audience %d duplicates audience %d (%q)", i, j, a)
			}
		}
	}
	if req.Grant != nil {
		// The grant must be one an X.509-SVID could carry too: Marshal
		// validates it and enforces the extension's size bound.
		if _, err := grant.Marshal(req.Grant); err != nil {
			return fmt.Errorf("jwtsvid: request: %w", err)
		}
	}
	return nil
}
