package jwtsvid

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	spiffejwt "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// TestValidateRefuses runs every token Validate must refuse through
// go-spiffe's jwtsvid.ParseAndValidate too, at the wall clock, and records
// which of them go-spiffe accepts: the checks this package adds.
func TestValidateRefuses(t *testing.T) {
	now := wallNow()
	s := genSigner(t, fixedClock(now))
	other := genSigner(t, fixedClock(now)) // same trust domain, another key
	kid := s.KeyID()
	key := s.key
	sub := workload.String()
	hdr := headerJSON("ES256", kid)
	good := claimsJSON(t, sub, now, nil)
	signed := func(header, payload string) string { return craft(t, "ES256", key, header, payload) }
	with := func(extra map[string]any) string { return signed(hdr, claimsJSON(t, sub, now, extra)) }
	token := mint(t, s, Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute})
	parts := strings.Split(token, ".")
	jwks, err := MarshalJWKS(s.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakBundle := s.Bundle() // NewBundle refuses the weak key; go-spiffe does not
	if err := weakBundle.AddJWTAuthority("weak", &weakRSA.PublicKey); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		token    string
		audience string           // default aud
		bundles  jwtbundle.Source // default s.Bundle()
		wantErr  string           // what Validate's error contains
		spiffeOK bool             // go-spiffe accepts it
	}{
		// What the JWT-SVID specification requires of every validator.
		{name: "wrong audience", token: token, audience: "spiffe://example.org/other", wantErr: `audience "spiffe://example.org/other" is not among`},
		{name: "expired", token: mint(t, withClock(s, fixedClock(now.Add(-2*time.Hour))), Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute}), wantErr: "expired at"},
		{name: "another key under the same kid", token: craft(t, "ES256", other.key, hdr, good), wantErr: "signature does not verify"},
		{name: "unknown kid", token: mint(t, other, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute}), wantErr: "no key " + `"` + other.KeyID()},
		{name: "alg none, no signature", token: craft(t, "none", nil, headerJSON("none", kid), good), wantErr: "empty signature"},
		{name: "alg none with a signature", token: craft(t, "none", nil, headerJSON("none", kid), good) + "c2ln", wantErr: `alg "none" is not allowed`},
		{name: "HS256 keyed with the public key's DER", token: craft(t, "HS256", pkix(t, s.Public()), headerJSON("HS256", kid), good), wantErr: `alg "HS256" is not allowed`},
		{name: "HS256 keyed with the JWKS", token: craft(t, "HS256", jwks, headerJSON("HS256", kid), good), wantErr: `alg "HS256" is not allowed`},
		{name: "HS512", token: craft(t, "HS512", pkix(t, s.Public()), headerJSON("HS512", kid), good), wantErr: `alg "HS512" is not allowed`},
		{name: "EdDSA", token: b64(headerJSON("EdDSA", kid)) + "." + b64(good) + ".c2ln", wantErr: `alg "EdDSA" is not allowed`},
		{name: "alg a number", token: signed(`{"alg":256,"kid":"`+kid+`"}`, good), wantErr: `alg "256" is not allowed`},
		{name: "ES384 with a P-256 key", token: craft(t, "ES384", key, headerJSON("ES384", kid), good), wantErr: "alg ES384 does not fit an ECDSA P-256 public key"},
		{name: "tampered payload", token: parts[0] + "." + b64(claimsJSON(t, "spiffe://example.org/admin", now, nil)) + "." + parts[2], wantErr: "signature does not verify"},
		{name: "tampered header", token: b64(`{"alg":"ES256","kid":"`+kid+`","typ":"JOSE"}`) + "." + parts[1] + "." + parts[2], wantErr: "signature does not verify"},
		{name: "truncated signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40], wantErr: "signature does not verify"},
		{name: "sub not a SPIFFE ID", token: with(map[string]any{"sub": "https://example.org/ns/prod"}), wantErr: `sub "https://example.org/ns/prod" is not a SPIFFE ID`},
		{name: "sub missing", token: with(map[string]any{"sub": nil}), wantErr: "sub claim missing"},
		{name: "sub a number", token: with(map[string]any{"sub": 7}), wantErr: "sub claim missing or not a string"},
		{name: "sub in a trust domain with no bundle", token: with(map[string]any{"sub": "spiffe://other.example/w"}), wantErr: `no JWT bundle for trust domain "other.example"`},
		{name: "no kid", token: signed(`{"alg":"ES256","typ":"JWT"}`, good), wantErr: "header has no kid"},
		{name: "typ at+jwt", token: signed(`{"alg":"ES256","kid":"`+kid+`","typ":"at+jwt"}`, good), wantErr: `typ "at+jwt" is neither JWT nor JOSE`},
		{name: "crit header", token: signed(`{"alg":"ES256","crit":["exp"],"exp":1,"kid":"`+kid+`"}`, good), wantErr: `header parameter "crit" is not allowed`},
		{name: "exp missing", token: with(map[string]any{"exp": nil}), wantErr: "exp claim missing"},
		{name: "exp a string", token: with(map[string]any{"exp": "soon"}), wantErr: "exp claim is not a number"},
		{name: "aud missing", token: with(map[string]any{"aud": nil}), wantErr: "aud claim missing"},
		{name: "aud empty", token: with(map[string]any{"aud": []string{}}), wantErr: "aud claim is empty"},
		{name: "aud element a number", token: with(map[string]any{"aud": []any{aud, 1}}), wantErr: "aud element 1 is not a string"},
		{name: "payload an array", token: signed(hdr, `["`+sub+`"]`), wantErr: "payload: not a JSON object"},
		{name: "payload not JSON", token: signed(hdr, `{"sub":`), wantErr: "payload: not JSON"},
		{name: "data after the payload", token: signed(hdr, good+`{}`), wantErr: "payload: not JSON: invalid character"},
		{name: "embedded jwk", token: signed(`{"alg":"ES256","jwk":{"kty":"oct","k":"c2VjcmV0"},"kid":"`+kid+`"}`, good), wantErr: `header parameter "jwk" is not allowed`},
		{name: "header repeats alg", token: signed(`{"alg":"ES256","kid":"`+kid+`","alg":"ES256"}`, good), wantErr: "header: JSON object repeats a member name (3 members, 2 distinct names)"},
		{name: "payload repeats sub", token: signed(hdr, `{"sub":"spiffe://example.org/admin",`+good[1:]), wantErr: "payload: JSON object repeats a member name"},
		{name: "non-canonical base64", token: nonCanonical(t, key, hdr, good), wantErr: "payload is not canonical unpadded base64url"},
		{name: "empty audience asked for", token: token, audience: "-", wantErr: "is not among"},

		// Malformed token strings.
		{name: "empty", token: "", wantErr: "token: empty"},
		{name: "one segment", token: parts[0], wantErr: "1 dot-separated segments, want 3"},
		{name: "four segments", token: token + ".x", wantErr: "4 dot-separated segments"},
		{name: "empty payload", token: parts[0] + ".." + parts[2], wantErr: "empty payload"},
		{name: "leading space", token: " " + token, wantErr: "character ' ' at 0"},
		{name: "padded", token: token + "==", wantErr: "character '='"},
		{name: "JSON serialization", token: `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, wantErr: "character '{' at 0"},
		{name: "standard base64", token: strings.NewReplacer("-", "+", "_", "/").Replace(token) + "+/", wantErr: "is not in JWS Compact Serialization"},
		{name: "header not base64", token: "a." + parts[1] + "." + parts[2], wantErr: "header is not canonical unpadded base64url"},
		{name: "too long", token: strings.Repeat("a", MaxTokenSize-1) + "..", wantErr: "more than 65536"},

		// What this package checks beyond go-spiffe.
		{name: "expired 31 s ago (go-jose's leeway is a minute)", token: with(map[string]any{"exp": now.Add(-Leeway - time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}), wantErr: "expired at", spiffeOK: true},
		{name: "trailing newline", token: token + "\n", wantErr: `character '\n'`, spiffeOK: true},
		{name: "extra header jku", token: signed(`{"alg":"ES256","jku":"https://evil.example/jwks","kid":"`+kid+`","typ":"JWT"}`, good), wantErr: `header parameter "jku" is not allowed`, spiffeOK: true},
		{name: "nested too deep", token: with(map[string]any{"x": nest(40)}), wantErr: "nested more than 32 deep", spiffeOK: true},
		{name: "bundle source answers with another trust domain's bundle", token: with(map[string]any{"sub": "spiffe://other.example/w"}), bundles: anySource{s.Bundle()}, wantErr: `returned no bundle of trust domain "other.example"`, spiffeOK: true},
		{name: "RSA key of 1024 bits", token: craft(t, "RS256", weakRSA, headerJSON("RS256", "weak"), good), bundles: weakBundle, wantErr: "unsupported key: an RSA 1024-bit public key", spiffeOK: true},
		{name: "grant scopes without grant ID", token: with(map[string]any{ClaimScopes: []any{map[string]any{"method": "/a.B/C"}}}), wantErr: "grant claims without jitgrant_grant_id", spiffeOK: true},
		{name: "grant ID without scopes", token: with(map[string]any{ClaimGrantID: "g1"}), wantErr: "grant claims without jitgrant_scopes", spiffeOK: true},
		{name: "use limit alone", token: with(map[string]any{ClaimUseLimit: 1}), wantErr: "grant claims without jitgrant_grant_id", spiffeOK: true},
		{name: "grant ID not a string", token: with(map[string]any{ClaimGrantID: 1, ClaimScopes: []any{}}), wantErr: "jitgrant_grant_id is not a string", spiffeOK: true},
		{name: "grant ID malformed", token: with(grantClaims("g 1", map[string]any{"method": "/a.B/C"})), wantErr: `grant ID "g 1"`, spiffeOK: true},
		{name: "grant without scopes", token: with(grantClaims("g1")), wantErr: "no scopes", spiffeOK: true},
		{name: "scopes not an array", token: with(map[string]any{ClaimGrantID: "g1", ClaimScopes: "/a.B/C"}), wantErr: "jitgrant_scopes is not an array", spiffeOK: true},
		{name: "scope a string", token: with(grantClaims("g1", "/a.B/C")), wantErr: "scope 0: not an object", spiffeOK: true},
		{name: "scope method malformed", token: with(grantClaims("g1", map[string]any{"method": "a.B/C"})), wantErr: "does not start with /", spiffeOK: true},
		{name: "scope method missing", token: with(grantClaims("g1", map[string]any{"resources": []any{}})), wantErr: "method missing", spiffeOK: true},
		{name: "scope with a misspelled member", token: with(grantClaims("g1", map[string]any{"method": "/a.B/C", "resource": []any{"x"}})), wantErr: `unknown member "resource"`, spiffeOK: true},
		{name: "resources not an array", token: with(grantClaims("g1", map[string]any{"method": "/a.B/C", "resources": "x"})), wantErr: "resources is not an array", spiffeOK: true},
		{name: "resource a number", token: with(grantClaims("g1", map[string]any{"method": "/a.B/C", "resources": []any{1}})), wantErr: "resource 0 is not a string", spiffeOK: true},
		{name: "resource pattern malformed", token: with(grantClaims("g1", map[string]any{"method": "/a.B/C", "resources": []any{"a*"}})), wantErr: "* must be a whole segment", spiffeOK: true},
		{name: "duplicate scopes", token: with(grantClaims("g1", map[string]any{"method": "/a.B/C"}, map[string]any{"method": "/a.B/C"})), wantErr: "scope 1 duplicates scope 0", spiffeOK: true},
		{name: "use limit fractional", token: with(withLimit(1.5)), wantErr: "jitgrant_use_limit is not an integer", spiffeOK: true},
		{name: "use limit negative", token: with(withLimit(-1)), wantErr: "jitgrant_use_limit is not an integer", spiffeOK: true},
		{name: "use limit over 32 bits", token: with(withLimit(1 << 32)), wantErr: "jitgrant_use_limit is not an integer", spiffeOK: true},
		{name: "use limit a string", token: with(withLimit("1")), wantErr: "jitgrant_use_limit is not an integer", spiffeOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			audience, bundles := aud, jwtbundle.Source(s.Bundle())
			if tt.audience != "" {
				audience = tt.audience
			}
			if tt.bundles != nil {
				bundles = tt.bundles
			}
			c, err := Validate(tt.token, audience, bundles, WithTime(now))
			if err == nil {
				t.Fatalf("Validate accepted it: %+v", c)
			}
			checkErr(t, err, tt.wantErr)
			if _, err := spiffejwt.ParseAndValidate(tt.token, bundles, []string{audience}); (err == nil) != tt.spiffeOK {
				t.Errorf("go-spiffe ParseAndValidate error %v, want accepted=%v", err, tt.spiffeOK)
			}
		})
	}
}

// TestValidateArguments checks the arguments Validate refuses outright.
func TestValidateArguments(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	token := mint(t, s, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute})
	_, err := Validate(token, "", s.Bundle(), WithTime(t0))
	checkErr(t, err, "audience is required")
	_, err = Validate(token, aud, nil, WithTime(t0))
	checkErr(t, err, "no bundle source")
}

// TestValidateExactNames checks that claim names match exactly: a "SUB" or
// "Aud" member is just another claim, never read as sub or aud (as
// encoding/json would match struct fields).
func TestValidateExactNames(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	token := craft(t, "ES256", s.key, headerJSON("ES256", s.KeyID()), claimsJSON(t, workload.String(), t0, map[string]any{
		"SUB": "spiffe://example.org/admin", "Aud": "other", "EXP": 1,
	}))
	c, err := Validate(token, aud, s.Bundle(), WithTime(t0))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != workload || c.Raw["sub"] != workload.String() || c.Raw["SUB"] != "spiffe://example.org/admin" {
		t.Errorf("ID %s, raw sub %v SUB %v", c.ID, c.Raw["sub"], c.Raw["SUB"])
	}
}

func grantClaims(id string, scopes ...any) map[string]any {
	if scopes == nil {
		scopes = []any{}
	}
	return map[string]any{ClaimGrantID: id, ClaimScopes: scopes}
}

func withLimit(limit any) map[string]any {
	m := grantClaims("g1", map[string]any{"method": "/a.B/C"})
	m[ClaimUseLimit] = limit
	return m
}

// nest returns n nested arrays.
func nest(n int) any {
	var v any = []any{}
	for range n - 1 {
		v = []any{v}
	}
	return v
}

// nonCanonical signs a token whose payload segment has non-zero unused bits
// in its last character: base64url that decodes, but not the encoding of
// what it decodes to.
func nonCanonical(t *testing.T, key any, header, payload string) string {
	t.Helper()
	for len(payload)%3 != 1 { // two characters for the last byte: 4 unused bits
		payload += " "
	}
	seg := []byte(b64(payload))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	seg[len(seg)-1] = alphabet[strings.IndexByte(alphabet, seg[len(seg)-1])|1]
	if _, err := base64.RawURLEncoding.DecodeString(string(seg)); err != nil {
		t.Fatal(err)
	}
	return signInput(t, "ES256", key, b64(header)+"."+string(seg))
}
