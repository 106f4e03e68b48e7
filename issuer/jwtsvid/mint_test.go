package jwtsvid

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		wantMaxTTL time.Duration
		wantErr    string
	}{
		{name: "defaults", cfg: Config{TrustDomain: td}, wantMaxTTL: DefaultMaxTTL},
		{name: "max TTL", cfg: Config{TrustDomain: td, MaxTTL: 10 * time.Minute}, wantMaxTTL: 10 * time.Minute},
		{name: "no trust domain", cfg: Config{}, wantErr: "trust domain is required"},
		{name: "negative max TTL", cfg: Config{TrustDomain: td, MaxTTL: -time.Second}, wantErr: "MaxTTL -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := GenerateSigner(tt.cfg)
			checkErr(t, err, tt.wantErr)
			if err == nil && (s.MaxTTL() != tt.wantMaxTTL || s.TrustDomain() != td) {
				t.Errorf("MaxTTL %s trust domain %s, want %s %s", s.MaxTTL(), s.TrustDomain(), tt.wantMaxTTL, td)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	ok := Request{ID: workload, Audience: []string{aud}, TTL: time.Minute}
	with := func(f func(r *Request)) Request { r := ok; f(&r); return r }
	many := make([]string, MaxAudiences+1)
	for i := range many {
		many[i] = string(rune('a' + i))
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{"no SPIFFE ID", with(func(r *Request) { r.ID = spiffeid.ID{} }), "SPIFFE ID is required"},
		{"trust domain ID", with(func(r *Request) { r.ID = td.ID() }), `"spiffe://example.org" has no path`},
		{"ID in another trust domain", with(func(r *Request) { r.ID = spiffeid.RequireFromPath(otherTD, "/w") }), `"spiffe://other.example/w" is not in trust domain "example.org"`},
		{"no audience", with(func(r *Request) { r.Audience = nil }), "no audience"},
		{"empty audience list", with(func(r *Request) { r.Audience = []string{} }), "no audience"},
		{"empty audience string", with(func(r *Request) { r.Audience = []string{aud, ""} }), "audience 1 is empty"},
		{"duplicate audience", with(func(r *Request) { r.Audience = []string{aud, "x", aud} }), "audience 2 duplicates audience 0"},
		{"too many audiences", with(func(r *Request) { r.Audience = many }), "17 audiences, more than 16"},
		{"audience too long", with(func(r *Request) { r.Audience = []string{strings.Repeat("a", MaxAudienceLength+1)} }), "audience 0 is 1025 bytes"},
		{"TTL zero", with(func(r *Request) { r.TTL = 0 }), "TTL 0s is less than a second"},
		{"TTL negative", with(func(r *Request) { r.TTL = -time.Minute }), "TTL -1m0s is less than a second"},
		{"TTL under a second", with(func(r *Request) { r.TTL = 999 * time.Millisecond }), "TTL 999ms is less than a second"},
		{"NotAfter passed", with(func(r *Request) { r.NotAfter = t0.Add(-time.Second) }), "NotAfter 2026-03-01T11:59:59Z is not a second after now"},
		{"NotAfter within the second", with(func(r *Request) { r.NotAfter = t0.Add(999 * time.Millisecond) }), "is not a second after now"},
		{"grant without scopes", with(func(r *Request) { r.Grant = &grant.Grant{ID: "g1"} }), "grant: invalid: no scopes"},
		{"grant with a bad ID", with(func(r *Request) { r.Grant = &grant.Grant{ID: "g/1", Scopes: []grant.Scope{{Method: "/a.B/C"}}} }), `grant ID "g/1"`},
		{"grant with a bad method", with(func(r *Request) { r.Grant = &grant.Grant{ID: "g1", Scopes: []grant.Scope{{Method: "a.B/C"}}} }), "does not start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, exp, err := s.Mint(tt.req)
			if err == nil {
				t.Fatalf("Mint = %q, %s; want an error", token, exp)
			}
			checkErr(t, err, tt.wantErr)
			if !strings.HasPrefix(err.Error(), "jwtsvid: request: ") {
				t.Errorf("error %q does not start with jwtsvid: request:", err)
			}
		})
	}
}

// TestMintExpiry checks iat and exp: whole seconds, the TTL capped by
// MaxTTL and NotAfter.
func TestMintExpiry(t *testing.T) {
	tests := []struct {
		name     string
		now      time.Time
		maxTTL   time.Duration
		ttl      time.Duration
		notAfter time.Time
		wantIat  time.Time
		wantExp  time.Time
	}{
		{name: "TTL", now: t0, ttl: 5 * time.Minute, wantIat: t0, wantExp: t0.Add(5 * time.Minute)},
		{name: "TTL over the default MaxTTL", now: t0, ttl: 2 * time.Hour, wantIat: t0, wantExp: t0.Add(time.Hour)},
		{name: "TTL over MaxTTL", now: t0, maxTTL: 10 * time.Minute, ttl: time.Hour, wantIat: t0, wantExp: t0.Add(10 * time.Minute)},
		{name: "fractional now", now: t0.Add(700 * time.Millisecond), ttl: time.Minute, wantIat: t0, wantExp: t0.Add(time.Minute)},
		{name: "fractional TTL", now: t0, ttl: 1500 * time.Millisecond, wantIat: t0, wantExp: t0.Add(time.Second)},
		{name: "NotAfter caps", now: t0, ttl: time.Hour, notAfter: t0.Add(90*time.Second + 500*time.Millisecond), wantIat: t0, wantExp: t0.Add(90 * time.Second)},
		{name: "NotAfter later", now: t0, ttl: time.Minute, notAfter: t0.Add(time.Hour), wantIat: t0, wantExp: t0.Add(time.Minute)},
		{name: "NotAfter in another zone", now: t0, ttl: time.Hour, notAfter: t0.Add(2 * time.Minute).In(time.FixedZone("X", 3600)), wantIat: t0, wantExp: t0.Add(2 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := GenerateSigner(Config{TrustDomain: td, Clock: fixedClock(tt.now), MaxTTL: tt.maxTTL})
			if err != nil {
				t.Fatal(err)
			}
			token, exp, err := s.Mint(Request{ID: workload, Audience: []string{aud}, TTL: tt.ttl, NotAfter: tt.notAfter})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if !exp.Equal(tt.wantExp) || exp.Location() != time.UTC {
				t.Errorf("returned exp %s, want %s in UTC", exp, tt.wantExp)
			}
			c, err := Validate(token, aud, s.Bundle(), WithTime(tt.now))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !c.IssuedAt.Equal(tt.wantIat) || !c.Expiry.Equal(tt.wantExp) {
				t.Errorf("iat %s exp %s, want %s %s", c.IssuedAt, c.Expiry, tt.wantIat, tt.wantExp)
			}
		})
	}
}

// TestMintConcurrent mints and validates from many goroutines (run with
// -race) and checks that every token ID differs.
func TestMintConcurrent(t *testing.T) {
	s := genSigner(t, fixedClock(t0))
	bundle := s.Bundle()
	const workers, each = 8, 25
	var (
		mu   sync.Mutex
		seen = make(map[string]bool)
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				req := Request{ID: workload, Audience: []string{aud}, TTL: time.Minute}
				if i%2 == 0 {
					req.Grant = sampleGrant()
				}
				token, _, err := s.Mint(req)
				if err != nil {
					t.Errorf("worker %d: Mint: %v", w, err)
					return
				}
				c, err := Validate(token, aud, bundle, WithTime(t0))
				if err != nil {
					t.Errorf("worker %d: Validate: %v", w, err)
					return
				}
				mu.Lock()
				if seen[c.TokenID] {
					t.Errorf("jti %q minted twice", c.TokenID)
				}
				seen[c.TokenID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Errorf("%d distinct token IDs, want %d", len(seen), workers*each)
	}
}
