package ca

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// keyTypeOf names the KeyType of a public key, "" if none.
func keyTypeOf(pub crypto.PublicKey) KeyType {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyTypeECP256
		case elliptic.P384():
			return KeyTypeECP384
		}
	case ed25519.PublicKey:
		return KeyTypeEd25519
	}
	return ""
}

func TestMint(t *testing.T) {
	type tc struct {
		name     string
		caKey    KeyType
		leafKey  KeyType
		givenKey bool // PublicKey set in the request, else generated
		grant    *grant.Grant
	}
	var tests []tc
	for _, caKey := range keyTypes {
		for _, leafKey := range keyTypes {
			for _, given := range []bool{true, false} {
				for _, g := range []*grant.Grant{nil, sampleGrant()} {
					mode, kind := "generated", "identity"
					if given {
						mode = "public-key"
					}
					if g != nil {
						kind = "grant"
					}
					tests = append(tests, tc{
						name:  fmt.Sprintf("ca=%s/leaf=%s/%s/%s", caKey, leafKey, mode, kind),
						caKey: caKey, leafKey: leafKey, givenKey: given, grant: g,
					})
				}
			}
		}
	}
	cas := map[KeyType]*CA{}
	for _, kt := range keyTypes {
		cas[kt] = newTestCA(t, kt, time.Hour)
	}
	const ttl = 5 * time.Minute
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *cas[tt.caKey]
			c.leafKey = tt.leafKey
			req := Request{ID: workload, TTL: ttl, Grant: tt.grant}
			var given crypto.Signer
			if tt.givenKey {
				given = newKey(t, tt.leafKey)
				req.PublicKey = given.Public()
			}
			svid, err := c.Mint(req)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if svid.ID != workload || len(svid.Certificates) != 1 {
				t.Fatalf("SVID ID %s with %d certificates, want %s with 1", svid.ID, len(svid.Certificates), workload)
			}
			leaf := svid.Certificates[0]
			if want := t0.Add(-Backdate); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore %s, want %s", leaf.NotBefore, want)
			}
			if want := t0.Add(ttl); !leaf.NotAfter.Equal(want) {
				t.Errorf("NotAfter %s, want %s", leaf.NotAfter, want)
			}
			if err := CheckSVID(leaf, workload, c.Certificate()); err != nil {
				t.Errorf("CheckSVID: %v", err)
			}
			if id, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(t0)); err != nil || id != workload {
				t.Errorf("x509svid.Verify = %s, %v; want %s", id, err, workload)
			}
			if got := keyTypeOf(leaf.PublicKey); got != tt.leafKey {
				t.Errorf("leaf key type %q, want %q", got, tt.leafKey)
			}
			switch {
			case tt.givenKey && svid.PrivateKey != nil:
				t.Error("PrivateKey set although the request gave a public key")
			case tt.givenKey && !given.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey):
				t.Error("leaf certifies another key than the requested one")
			case !tt.givenKey && svid.PrivateKey == nil:
				t.Error("PrivateKey nil for a generated key pair")
			case !tt.givenKey:
				// go-spiffe's own check that key and leaf belong together.
				certPEM, keyPEM, err := svid.Marshal()
				if err != nil {
					t.Fatalf("SVID.Marshal: %v", err)
				}
				if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
					t.Errorf("x509svid.Parse of the minted SVID: %v", err)
				}
			}
			if len(leaf.Subject.Names) != 0 {
				t.Errorf("subject %q, want empty", leaf.Subject)
			}
			if n := leaf.SerialNumber.BitLen(); leaf.SerialNumber.Sign() <= 0 || n > 128 {
				t.Errorf("serial %v: want positive, at most 128 bits", leaf.SerialNumber)
			}
			if string(leaf.AuthorityKeyId) != string(c.Certificate().SubjectKeyId) {
				t.Errorf("AuthorityKeyId %x, want the CA's %x", leaf.AuthorityKeyId, c.Certificate().SubjectKeyId)
			}
			g, err := grant.FromCertificate(leaf)
			if tt.grant == nil {
				if !errors.Is(err, grant.ErrNoGrant) || svid.Hint != "" {
					t.Errorf("identity SVID: FromCertificate err %v, Hint %q; want ErrNoGrant and no hint", err, svid.Hint)
				}
				return
			}
			if err != nil {
				t.Fatalf("grant.FromCertificate: %v", err)
			}
			if !reflect.DeepEqual(g, tt.grant) {
				t.Errorf("grant read back %+v, want %+v", g, tt.grant)
			}
			if svid.Hint != tt.grant.ID {
				t.Errorf("Hint %q, want the grant ID %q", svid.Hint, tt.grant.ID)
			}
		})
	}
}

func TestMintValidity(t *testing.T) {
	// The CA is valid over [t0-10s, t0+1h).
	base := newTestCA(t, KeyTypeECP256, time.Hour)
	tests := []struct {
		name          string
		now           time.Time
		ttl           time.Duration
		notAfter      time.Time
		wantNotBefore time.Time
		wantNotAfter  time.Time
		wantErr       string
	}{
		{name: "backdated", now: t0.Add(time.Minute), ttl: 5 * time.Minute, wantNotBefore: t0.Add(50 * time.Second), wantNotAfter: t0.Add(6 * time.Minute)},
		{name: "sub-second clock", now: t0.Add(time.Minute + 999*time.Millisecond), ttl: time.Minute, wantNotBefore: t0.Add(50 * time.Second), wantNotAfter: t0.Add(2 * time.Minute)},
		{name: "NotBefore clipped at the CA's", now: t0.Add(-5 * time.Second), ttl: time.Minute, wantNotBefore: t0.Add(-10 * time.Second), wantNotAfter: t0.Add(55 * time.Second)},
		{name: "TTL clipped at CA expiry", now: t0.Add(59 * time.Minute), ttl: 5 * time.Minute, wantNotBefore: t0.Add(59*time.Minute - 10*time.Second), wantNotAfter: t0.Add(time.Hour)},
		{name: "TTL far beyond CA expiry", now: t0, ttl: 100 * 365 * 24 * time.Hour, wantNotBefore: t0.Add(-10 * time.Second), wantNotAfter: t0.Add(time.Hour)},
		{name: "one second TTL", now: t0, ttl: time.Second, wantNotBefore: t0.Add(-10 * time.Second), wantNotAfter: t0.Add(time.Second)},
		{name: "NotAfter alone, sub-second clock", now: t0.Add(time.Minute + 700*time.Millisecond), notAfter: t0.Add(3 * time.Minute), wantNotBefore: t0.Add(50 * time.Second), wantNotAfter: t0.Add(3 * time.Minute)},
		{name: "NotAfter within the second truncated", now: t0.Add(time.Minute + 700*time.Millisecond), notAfter: t0.Add(3*time.Minute + 900*time.Millisecond), wantNotBefore: t0.Add(50 * time.Second), wantNotAfter: t0.Add(3 * time.Minute)},
		{name: "NotAfter before now+TTL", now: t0.Add(time.Minute + 700*time.Millisecond), ttl: 10 * time.Minute, notAfter: t0.Add(3*time.Minute + 500*time.Millisecond), wantNotBefore: t0.Add(50 * time.Second), wantNotAfter: t0.Add(3 * time.Minute)},
		{name: "now+TTL before NotAfter", now: t0, ttl: time.Minute, notAfter: t0.Add(3 * time.Minute), wantNotBefore: t0.Add(-10 * time.Second), wantNotAfter: t0.Add(time.Minute)},
		{name: "NotAfter clipped at CA expiry", now: t0.Add(59 * time.Minute), notAfter: t0.Add(2 * time.Hour), wantNotBefore: t0.Add(59*time.Minute - 10*time.Second), wantNotAfter: t0.Add(time.Hour)},
		{name: "NotAfter in the last second", now: t0.Add(time.Minute + 300*time.Millisecond), notAfter: t0.Add(time.Minute + 900*time.Millisecond), wantErr: "ca: request: NotAfter 2026-"},
		{name: "NotAfter passed", now: t0.Add(time.Minute), notAfter: t0, wantErr: "ca: request: NotAfter"},
		{name: "CA expired", now: t0.Add(time.Hour), ttl: time.Minute, wantErr: "ca: CA chain expired at"},
		{name: "CA not yet valid", now: t0.Add(-11 * time.Second), ttl: time.Minute, wantErr: "ca: CA chain is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withClock(base, fixedClock(tt.now))
			svid, err := c.Mint(Request{ID: workload, TTL: tt.ttl, NotAfter: tt.notAfter, Grant: sampleGrant()})
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Mint error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			leaf := svid.Certificates[0]
			if !leaf.NotBefore.Equal(tt.wantNotBefore) || !leaf.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("validity [%s, %s], want [%s, %s]", leaf.NotBefore, leaf.NotAfter, tt.wantNotBefore, tt.wantNotAfter)
			}
			if leaf.NotAfter.After(c.Certificate().NotAfter) {
				t.Errorf("NotAfter %s outlives the CA's %s", leaf.NotAfter, c.Certificate().NotAfter)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(tt.now)); err != nil {
				t.Errorf("x509svid.Verify at now: %v", err)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	c := newTestCA(t, KeyTypeECP256, time.Hour)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{name: "no ID", req: Request{TTL: time.Minute}, wantErr: "ca: request: SPIFFE ID is required"},
		{name: "ID of another trust domain", req: Request{ID: spiffeid.RequireFromString("spiffe://other.example/w"), TTL: time.Minute, Grant: sampleGrant()}, wantErr: `ca: request: SPIFFE ID "spiffe://other.example/w" is not in trust domain "example.org"`},
		{name: "trust domain ID", req: Request{ID: td.ID(), TTL: time.Minute}, wantErr: `ca: request: SPIFFE ID "spiffe://example.org" has no path`},
		{name: "zero TTL", req: Request{ID: workload, Grant: sampleGrant()}, wantErr: "ca: request: TTL 0s is not positive"},
		{name: "negative TTL", req: Request{ID: workload, TTL: -time.Minute}, wantErr: "ca: request: TTL -1m0s is not positive"},
		{name: "invalid grant", req: Request{ID: workload, TTL: time.Minute, Grant: &grant.Grant{ID: "g1"}}, wantErr: "ca: request: grant: invalid"},
		{name: "weak RSA key", req: Request{ID: workload, TTL: time.Minute, PublicKey: rsa1024.Public()}, wantErr: "ca: request: public key: RSA key of 1024 bits"},
		{name: "X25519 key", req: Request{ID: workload, TTL: time.Minute, PublicKey: x25519.PublicKey()}, wantErr: "ca: request: public key: unsupported key type *ecdh.PublicKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := c.Mint(tt.req)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Mint error %v, want prefix %q", err, tt.wantErr)
			}
			if svid != nil {
				t.Errorf("Mint returned an SVID with error %v", err)
			}
		})
	}
}

func TestMintConcurrent(t *testing.T) {
	c := newTestCA(t, KeyTypeECP256, time.Hour)
	const workers, each = 8, 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		serials = map[string]bool{}
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				req := Request{ID: workload, TTL: time.Minute}
				if (w+i)%2 == 0 {
					req.Grant = sampleGrant()
				}
				svid, err := c.Mint(req)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				serials[svid.Certificates[0].SerialNumber.String()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(serials) != workers*each {
		t.Errorf("%d distinct serials over %d SVIDs", len(serials), workers*each)
	}
}
