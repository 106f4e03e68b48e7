package jwtsvid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// t0 is the fixed "now" of the tests that need no agreement with go-spiffe,
// which reads the wall clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	otherTD  = spiffeid.RequireTrustDomainFromString("other.example")
	workload = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/ledger-client")
)

const aud = "spiffe://example.org/ledger"

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// wallNow is the wall-clock time in whole seconds: the clock of tests whose
// tokens go-spiffe must accept too.
func wallNow() time.Time { return time.Now().UTC().Truncate(time.Second) }

func genSigner(t testing.TB, clock func() time.Time) *Signer {
	t.Helper()
	s, err := GenerateSigner(Config{TrustDomain: td, Clock: clock})
	if err != nil {
		t.Fatalf("GenerateSigner: %v", err)
	}
	return s
}

// fixedSigner loads the signer of testdata/signer-p256.pem, a key generated
// once with openssl (`openssl genpkey -algorithm EC -pkeyopt
// ec_paramgen_curve:P-256`), so that fuzz corpus tokens keep verifying.
func fixedSigner(t testing.TB, clock func() time.Time) *Signer {
	t.Helper()
	keyPEM, err := os.ReadFile("testdata/signer-p256.pem")
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(Config{TrustDomain: td, Clock: clock}, keyPEM)
	if err != nil {
		t.Fatalf("LoadSigner: %v", err)
	}
	return s
}

// withClock returns a copy of s reading time from clock.
func withClock(s *Signer, clock func() time.Time) *Signer {
	c := *s
	c.clock = clock
	return &c
}

func mint(t testing.TB, s *Signer, req Request) string {
	t.Helper()
	tok, _, err := s.Mint(req)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

func sampleGrant() *grant.Grant {
	return &grant.Grant{
		ID: "req-01HX3Z",
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/GetBalance"},
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*", "accounts/*/history"}},
		},
		UseLimit: 1,
	}
}

// b64 is base64url without padding.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// segments splits a compact token, decoding header and payload.
func segments(t testing.TB, token string) (header, payload, sig string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("decoding token: %v, %v", err1, err2)
	}
	return string(h), string(p), parts[2]
}

// craft signs header and payload (JSON text, used as given) with key by alg,
// by the standard library alone: the way tests build tokens Mint would never
// make. key is a crypto.Signer for RS*, PS* and ES*, a []byte for HS*;
// alg "none" gives an empty signature.
func craft(t testing.TB, alg string, key any, header, payload string) string {
	t.Helper()
	return signInput(t, alg, key, b64(header)+"."+b64(payload))
}

// signInput signs a JWS signing input (header.payload, as sent) like craft.
func signInput(t testing.TB, alg string, key any, input string) string {
	t.Helper()
	if alg == "none" {
		return input + "."
	}
	var h crypto.Hash
	switch alg[2:] {
	case "256":
		h = crypto.SHA256
	case "384":
		h = crypto.SHA384
	case "512":
		h = crypto.SHA512
	default:
		t.Fatalf("craft: alg %q", alg)
	}
	var sig []byte
	var err error
	switch alg[:2] {
	case "HS":
		newHash := map[crypto.Hash]func() hash.Hash{crypto.SHA256: sha256.New, crypto.SHA384: sha512.New384, crypto.SHA512: sha512.New}[h]
		m := hmac.New(newHash, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "ES":
		k := key.(*ecdsa.PrivateKey)
		d := h.New()
		d.Write([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, d.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	case "RS", "PS":
		d := h.New()
		d.Write([]byte(input))
		if alg[0] == 'R' {
			sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, d.Sum(nil))
		} else {
			sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, d.Sum(nil), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("craft: alg %q", alg)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// claimsJSON returns the JSON of a valid identity token's claims for sub at
// now, with extra members merged in (a nil value deletes the member).
func claimsJSON(t testing.TB, sub string, now time.Time, extra map[string]any) string {
	t.Helper()
	m := map[string]any{
		"sub": sub,
		"aud": []string{aud},
		"exp": now.Add(5 * time.Minute).Unix(),
		"iat": now.Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// headerJSON returns a JWT-SVID header for alg and kid.
func headerJSON(alg, kid string) string {
	return `{"alg":"` + alg + `","kid":"` + kid + `","typ":"JWT"}`
}
