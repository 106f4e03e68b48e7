package jwtsvid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffejwt "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestMintValidate mints tokens at the wall clock and has both go-spiffe's
// jwtsvid.ParseAndValidate and Validate accept them with the same claims.
func TestMintValidate(t *testing.T) {
	noResources := &grant.Grant{ID: "g.1_x-2", Scopes: []grant.Scope{{Method: "/pkg.S/*"}}}
	tests := []struct {
		name     string
		audience []string
		grant    *grant.Grant
	}{
		{name: "identity", audience: []string{aud}},
		{name: "identity, three audiences", audience: []string{"a", aud, "spiffe://other.example/x"}},
		{name: "grant", audience: []string{aud}, grant: sampleGrant()},
		{name: "grant without resources or use limit", audience: []string{aud}, grant: noResources},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := wallNow()
			s := genSigner(t, fixedClock(now))
			token, exp, err := s.Mint(Request{ID: workload, Audience: tt.audience, TTL: 5 * time.Minute, Grant: tt.grant})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if want := now.Add(5 * time.Minute); !exp.Equal(want) {
				t.Errorf("exp %s, want %s", exp, want)
			}

			svid, err := spiffejwt.ParseAndValidate(token, s.Bundle(), []string{aud})
			if err != nil {
				t.Fatalf("go-spiffe ParseAndValidate: %v", err)
			}
			if svid.ID != workload || !reflect.DeepEqual(svid.Audience, tt.audience) || !svid.Expiry.Equal(exp) {
				t.Errorf("go-spiffe read ID %s, aud %q, exp %s; want %s, %q, %s", svid.ID, svid.Audience, svid.Expiry, workload, tt.audience, exp)
			}

			c, err := Validate(token, aud, s.Bundle(), WithTime(now))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			switch {
			case c.ID != workload:
				t.Errorf("ID %s, want %s", c.ID, workload)
			case !reflect.DeepEqual(c.Audience, tt.audience):
				t.Errorf("Audience %q, want %q", c.Audience, tt.audience)
			case !c.Expiry.Equal(exp) || !c.IssuedAt.Equal(now):
				t.Errorf("exp %s iat %s, want %s %s", c.Expiry, c.IssuedAt, exp, now)
			case c.KeyID != s.KeyID() || len(c.TokenID) != 22:
				t.Errorf("kid %q jti %q, want %q and 22 characters", c.KeyID, c.TokenID, s.KeyID())
			case !reflect.DeepEqual(c.Grant, tt.grant):
				t.Errorf("Grant %+v, want %+v", c.Grant, tt.grant)
			}
			// Both parsers see the same claims, and ValidateJWTSVID can
			// send them as its claims Struct.
			if !reflect.DeepEqual(c.Raw, svid.Claims) {
				t.Errorf("Raw claims %v differ from go-spiffe's %v", c.Raw, svid.Claims)
			}
			if st, err := structpb.NewStruct(c.Raw); err != nil || st.Fields["sub"].GetStringValue() != workload.String() {
				t.Errorf("structpb.NewStruct(Raw): %v, %v", st, err)
			}

			header, payload, _ := segments(t, token)
			if want := headerJSON("ES256", s.KeyID()); header != want {
				t.Errorf("header %s, want %s", header, want)
			}
			var members map[string]json.RawMessage
			if err := json.Unmarshal([]byte(payload), &members); err != nil {
				t.Fatal(err)
			}
			want := []string{"aud", "exp", "iat", "jti", "sub"}
			if tt.grant != nil {
				want = append(want, ClaimGrantID, ClaimScopes)
				if tt.grant.UseLimit != 0 {
					want = append(want, ClaimUseLimit)
				}
			}
			if len(members) != len(want) {
				t.Errorf("payload %s, want exactly the members %q", payload, want)
			}
			for _, m := range want {
				if _, ok := members[m]; !ok {
					t.Errorf("payload %s lacks %q", payload, m)
				}
			}
		})
	}
}

// TestGrantClaimsContract pins the JSON of the grant claims: the contract
// relying parties read without this package.
func TestGrantClaimsContract(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	g := sampleGrant()
	g.Approvers = []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/person/alice")}
	_, payload, _ := segments(t, mint(t, s, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute, Grant: g}))
	if strings.Contains(payload, "alice") {
		t.Errorf("payload %s names an approver", payload)
	}
	want := `"jitgrant_grant_id":"req-01HX3Z","jitgrant_scopes":[{"method":"/bank.v1.Ledger/GetBalance","resources":[]},{"method":"/bank.v1.Ledger/Refund","resources":["accounts/*","accounts/*/history"]}],"jitgrant_use_limit":1}`
	if !strings.HasSuffix(payload, want) {
		t.Errorf("payload\n%s\ndoes not end with\n%s", payload, want)
	}
	if !strings.HasPrefix(payload, `{"sub":"spiffe://example.org/ns/prod/sa/ledger-client","aud":["spiffe://example.org/ledger"],"exp":1772366460,"iat":1772366400,"jti":"`) {
		t.Errorf("payload %s: registered claims not as expected", payload)
	}
}

// TestValidateAcceptsOtherIssuers checks tokens that Mint never makes but
// the JWT-SVID specification allows: other algorithms and key types, typ
// JOSE or absent, aud a string, no iat or jti, fractional times, a previous
// key of a rotation.
func TestValidateAcceptsOtherIssuers(t *testing.T) {
	now := wallNow()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	current, previous := genSigner(t, fixedClock(now)), genSigner(t, fixedClock(now))
	bundle, err := NewBundle(td,
		current.Authority(),
		previous.Authority(),
		Authority{KeyID: "p384", PublicKey: &p384.PublicKey},
		Authority{KeyID: "p521", PublicKey: &p521.PublicKey},
		Authority{KeyID: "rsa", PublicKey: &rsaKey.PublicKey},
	)
	if err != nil {
		t.Fatal(err)
	}
	sub := workload.String()
	claims := claimsJSON(t, sub, now, nil)
	tests := []struct {
		name, token string
	}{
		{"current key", mint(t, current, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute})},
		{"previous key", mint(t, previous, Request{ID: workload, Audience: []string{aud}, TTL: time.Minute})},
		{"ES384", craft(t, "ES384", p384, headerJSON("ES384", "p384"), claims)},
		{"ES512", craft(t, "ES512", p521, headerJSON("ES512", "p521"), claims)},
		{"RS256", craft(t, "RS256", rsaKey, headerJSON("RS256", "rsa"), claims)},
		{"RS512", craft(t, "RS512", rsaKey, headerJSON("RS512", "rsa"), claims)},
		{"PS256", craft(t, "PS256", rsaKey, headerJSON("PS256", "rsa"), claims)},
		{"PS384", craft(t, "PS384", rsaKey, headerJSON("PS384", "rsa"), claims)},
		{"typ JOSE", craft(t, "ES384", p384, `{"alg":"ES384","kid":"p384","typ":"JOSE"}`, claims)},
		{"no typ", craft(t, "ES384", p384, `{"kid":"p384","alg":"ES384"}`, claims)},
		{"aud a string, no iat", craft(t, "ES384", p384, headerJSON("ES384", "p384"),
			claimsJSON(t, sub, now, map[string]any{"aud": aud, "iat": nil}))},
		{"fractional exp, nbf now", craft(t, "ES384", p384, headerJSON("ES384", "p384"),
			claimsJSON(t, sub, now, map[string]any{"exp": float64(now.Unix()) + 60.5, "nbf": now.Unix()}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := spiffejwt.ParseAndValidate(tt.token, bundle, []string{aud}); err != nil {
				t.Errorf("go-spiffe refuses: %v", err)
			}
			c, err := Validate(tt.token, aud, bundle, WithTime(now))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if c.ID != workload || c.Grant != nil {
				t.Errorf("ID %s grant %v, want %s and none", c.ID, c.Grant, workload)
			}
		})
	}
}

// TestValidateTime checks the exp, nbf and iat bounds at an injected clock,
// one second either side of each.
func TestValidateTime(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	token := mint(t, s, Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute})
	exp := t0.Add(5 * time.Minute)
	key := s.key
	nbfToken := craft(t, "ES256", key, headerJSON("ES256", s.KeyID()),
		claimsJSON(t, workload.String(), t0, map[string]any{"nbf": t0.Add(time.Minute).Unix(), "iat": nil}))
	iatToken := craft(t, "ES256", key, headerJSON("ES256", s.KeyID()),
		claimsJSON(t, workload.String(), t0, map[string]any{"iat": t0.Add(time.Minute).Unix()}))
	tests := []struct {
		name    string
		token   string
		now     time.Time
		wantErr string
	}{
		{"at iat", token, t0, ""},
		{"just before exp+leeway", token, exp.Add(Leeway - time.Second), ""},
		{"at exp+leeway", token, exp.Add(Leeway), "expired at"},
		{"long expired", token, exp.Add(time.Hour), "expired at"},
		{"nbf within leeway", nbfToken, t0.Add(time.Minute - Leeway), ""},
		{"nbf beyond leeway", nbfToken, t0.Add(time.Minute - Leeway - time.Second), "not valid before"},
		{"iat within leeway", iatToken, t0.Add(time.Minute - Leeway), ""},
		{"iat beyond leeway", iatToken, t0.Add(time.Minute - Leeway - time.Second), "issued in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Validate(tt.token, aud, s.Bundle(), WithTime(tt.now))
			checkErr(t, err, tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("error %v, want none", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want one containing %q", err, want)
	case err != nil && !strings.HasPrefix(err.Error(), "jwtsvid: "):
		t.Fatalf("error %q lacks the package prefix", err)
	}
}

// pkix returns the PKIX DER of a public key, as an attacker would use it
// for an HMAC secret.
func pkix(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// anySource answers every trust domain with its one bundle, right or not.
type anySource struct{ b *jwtbundle.Bundle }

func (s anySource) GetJWTBundleForTrustDomain(spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return s.b, nil
}
