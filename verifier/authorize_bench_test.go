package verifier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fixture builds a verifier with one admitted peer holding g, and the context
// an RPC of that peer would carry.
func fixture(tb testing.TB, g *grant.Grant, cfg Config) (*Verifier, context.Context) {
	tb.Helper()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	id := spiffeid.RequireFromString("spiffe://example.org/workload")
	if cfg.SVIDSource == nil {
		cfg.SVIDSource, cfg.BundleSource = noSource{}, noSource{}
	}
	cfg.Clock = func() time.Time { return now }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(5 * time.Minute)}
	if g != nil {
		ext, err := grant.Extension(g)
		if err != nil {
			tb.Fatal(err)
		}
		leaf.Extensions = append(leaf.Extensions, ext)
	}
	info := credentials.TLSInfo{
		State:    tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}},
		SPIFFEID: &url.URL{Scheme: "spiffe", Host: id.TrustDomain().Name(), Path: id.Path()},
	}
	if _, err := v.admit(&info); err != nil {
		tb.Fatal(err)
	}
	return v, peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
}

// BenchmarkAuthorize measures the per-RPC decision for a grant of 16 scopes
// whose last scope matches, with a resource read from the request by
// protoreflect, against an empty revocation set and one of 100,000 IDs.
func BenchmarkAuthorize(b *testing.B) {
	g := &grant.Grant{ID: "bench-grant"}
	for i := range 15 {
		g.Scopes = append(g.Scopes, grant.Scope{Method: fmt.Sprintf("/bank.v1.Ledger/Method%02d", i)})
	}
	g.Scopes = append(g.Scopes, grant.Scope{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}})
	req := wrapperspb.String("accounts/42")
	for _, revoked := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("revoked-%d", revoked), func(b *testing.B) {
			set := NewRevocationSet()
			exp := time.Now().Add(time.Hour)
			for i := range revoked {
				set.Revoke(fmt.Sprintf("grant-%06d", i), exp)
			}
			v, ctx := fixture(b, g, Config{
				ResourceFields: map[string]string{"/bank.v1.Ledger/Refund": "value"},
				Revocations:    set,
			})
			b.ReportAllocs()
			for b.Loop() {
				pc := v.lookup(ctx)
				r, _ := v.decide(pc, "/bank.v1.Ledger/Refund", req, false)
				v.metrics.decisions[r].Add(1)
				if r != reasonAllowed {
					b.Fatalf("decision %v", r)
				}
			}
		})
	}
}

func TestAuthorizeDoesNotAllocate(t *testing.T) {
	g := &grant.Grant{ID: "g", Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}}}
	v, ctx := fixture(t, g, Config{ResourceFields: map[string]string{"/bank.v1.Ledger/Refund": "value"}})
	req := wrapperspb.String("accounts/42")
	allocs := testing.AllocsPerRun(200, func() {
		if r, _ := v.decide(v.lookup(ctx), "/bank.v1.Ledger/Refund", req, false); r != reasonAllowed {
			t.Fatalf("decision %v", r)
		}
	})
	if allocs != 0 {
		t.Errorf("the per-RPC decision allocates %v times", allocs)
	}
}

// noSource satisfies the SVID and bundle source interfaces for tests that
// never handshake.
type noSource struct{}

func (noSource) GetX509SVID() (*x509svid.SVID, error) {
	return nil, errors.New("no SVID in this test")
}

func (noSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return nil, errors.New("no bundle in this test")
}
