package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestLookupWithoutVerifiedPeer: every way an RPC context can lack a peer
// the handshake verified ends in Unauthenticated.
func TestLookupWithoutVerifiedPeer(t *testing.T) {
	v, _ := fixture(t, nil, Config{})
	unknownLeaf := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}}
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{"no peer", context.Background()},
		{"not TLS", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: fakeAuth{}})},
		{"TLS without certificates", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})},
		{"a leaf the handshake did not admit", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: unknownLeaf})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := v.lookup(tt.ctx)
			if r, _ := v.decide(pc, "/bank.v1.Ledger/GetBalance", nil, false); r != reasonUnauthenticated {
				t.Fatalf("decision %v, want %v", r, reasonUnauthenticated)
			}
			if err := v.denial(reasonUnauthenticated, pc, "/m.S/M"); status.Code(err) != codes.Unauthenticated {
				t.Errorf("denial: %v", err)
			}
		})
	}
	if err := v.denial(reasonAllowed, nil, "/m.S/M"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "jitgrant: denied") {
		t.Errorf("denial of an unknown reason: %v, want a plain PermissionDenied", err)
	}
}

type fakeAuth struct{}

func (fakeAuth) AuthType() string { return "fake" }

// TestReadResource: what the resource reader accepts and refuses.
func TestReadResource(t *testing.T) {
	req := &pb.ReviewResponse{Request: &pb.AccessRequest{Id: "accounts/1"}, Note: "n", Counted: true}
	tests := []struct {
		name   string
		req    any
		path   string
		want   string
		wantOK bool
	}{
		{"string field", req, "note", "n", true},
		{"nested string", req, "request.id", "accounts/1", true},
		{"unset parent", &pb.ReviewResponse{}, "request.id", "", true},
		{"not a proto message", "accounts/1", "value", "", false},
		{"typed nil message reads as unset", (*wrapperspb.StringValue)(nil), "value", "", true},
		{"untyped nil", nil, "value", "", false},
		{"no such field", req, "nope", "", false},
		{"not a string", req, "counted", "", false},
		{"through a string", req, "note.id", "", false},
		{"a list", req, "request.scopes", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := readResource(tt.req, tt.path)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("readResource(%q) = %q, %v, want %q, %v", tt.path, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestAdmitRefuses: a handshake state without a SPIFFE certificate is
// refused.
func TestAdmitRefuses(t *testing.T) {
	v, _ := fixture(t, nil, Config{})
	tests := []struct {
		name    string
		info    credentials.TLSInfo
		wantErr string
	}{
		{"no certificate", credentials.TLSInfo{}, "no SPIFFE certificate"},
		{"no SPIFFE ID", credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}}, "no SPIFFE certificate"},
		{"bad SPIFFE ID", credentials.TLSInfo{
			State:    tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}},
			SPIFFEID: &url.URL{Scheme: "https", Host: "example.org"},
		}, "peer ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.admit(&tt.info); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("admit: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyPeerRefuses: chains the handshake's verification refuses, also
// when the leaf is not yet valid.
func TestVerifyPeerRefuses(t *testing.T) {
	v, _ := fixture(t, nil, Config{})
	// A self-signed SVID an hour ahead of the verifier's clock, from no
	// trusted CA: the second verification, at its NotBefore, fails too.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := v.cfg.Clock()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour),
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/w"}}, KeyUsage: x509.KeyUsageDigitalSignature}
	future, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		raw  [][]byte
	}{
		{"no certificate", nil},
		{"not DER", [][]byte{[]byte("not a certificate")}},
		{"not yet valid, untrusted", [][]byte{future}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := v.verifyPeer(tt.raw, nil); err == nil {
				t.Error("verifyPeer accepted it")
			}
		})
	}
}

// TestClockHint: only a server certificate not yet valid by this machine's
// clock gets the clock-skew message.
func TestClockHint(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ahead := &x509.Certificate{NotBefore: now.Add(90 * time.Second), NotAfter: now.Add(time.Hour)}
	past := &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(-time.Minute)}
	other := errors.New("tls: bad certificate")
	tests := []struct {
		name     string
		err      error
		wantHint bool
	}{
		{"no error", nil, false},
		{"another error", other, false},
		{"expired", fmt.Errorf("x509svid: %w", x509.CertificateInvalidError{Cert: past, Reason: x509.Expired}), false},
		{"another reason", x509.CertificateInvalidError{Cert: ahead, Reason: x509.NotAuthorizedToSign}, false},
		{"not yet valid", fmt.Errorf("x509svid: could not verify leaf certificate: %w", x509.CertificateInvalidError{Cert: ahead, Reason: x509.Expired}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clockHint(tt.err, now)
			if !tt.wantHint {
				if got != tt.err {
					t.Errorf("clockHint changed %v into %v", tt.err, got)
				}
				return
			}
			if !errors.Is(got, tt.err) || !strings.Contains(got.Error(), "1m30s ahead of this machine's clock") {
				t.Errorf("clockHint: %v", got)
			}
		})
	}
}

// TestSweep: a handshake after sweepEvery drops the cache entries and use
// counters of expired certificates and prunes expired revocations.
func TestSweep(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	v, err := New(Config{
		SVIDSource: noSource{}, BundleSource: noSource{}, Clock: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(id string, notAfter time.Time) {
		t.Helper()
		ext, err := grant.Extension(&grant.Grant{ID: id, Scopes: []grant.Scope{{Method: "/a.B/C"}}, UseLimit: 1})
		if err != nil {
			t.Fatal(err)
		}
		leaf := &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: notAfter, Extensions: []pkix.Extension{ext}}
		info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}},
			SPIFFEID: &url.URL{Scheme: "spiffe", Host: "example.org", Path: "/w"}}
		if _, err := v.admit(&info); err != nil {
			t.Fatal(err)
		}
	}
	admit("short", now.Add(time.Minute))
	v.revSet.Revoke("old", now.Add(time.Minute))
	v.revSet.Revoke("young", now.Add(time.Hour))
	now = now.Add(2 * time.Minute)
	admit("long", now.Add(time.Hour))
	if v.metrics.connections.Load() != 1 {
		t.Errorf("%d connections cached, want 1 (the expired one dropped)", v.metrics.connections.Load())
	}
	if _, ok := v.counters.Load("short"); ok {
		t.Error("the expired grant's use counter was kept")
	}
	if v.revSet.Revoked("old") || !v.revSet.Revoked("young") || v.revSet.Len() != 1 {
		t.Errorf("revocations after the sweep: old %v, young %v, %d held", v.revSet.Revoked("old"), v.revSet.Revoked("young"), v.revSet.Len())
	}
}

// TestServerCredsAreForServers: the verifier's credentials refuse to dial.
func TestServerCredsAreForServers(t *testing.T) {
	v, _ := fixture(t, nil, Config{})
	creds := v.TransportCredentials().Clone()
	if _, _, err := creds.ClientHandshake(context.Background(), "x", nil); !errors.Is(err, errServerOnly) {
		t.Errorf("ClientHandshake: %v", err)
	}
}

// TestContextHelpers: the grant, peer ID and identity a handler reads.
func TestContextHelpers(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	g := &grant.Grant{ID: "g", Scopes: []grant.Scope{{Method: "/a.B/C"}}}
	tests := []struct {
		name                              string
		ctx                               context.Context
		wantGrant, wantPeer, wantIdentity bool
	}{
		{"outside an RPC", context.Background(), false, false, false},
		{"identity SVID", newContext(context.Background(), &peerConn{id: id}), false, true, true},
		{"grant certificate", newContext(context.Background(), &peerConn{id: id, grant: g}), true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, gotGrant := GrantFromContext(tt.ctx)
			gotID, gotPeer := PeerIDFromContext(tt.ctx)
			identity, gotIdentity := IdentityFromContext(tt.ctx)
			if gotGrant != tt.wantGrant || gotPeer != tt.wantPeer || gotIdentity != tt.wantIdentity {
				t.Fatalf("grant %v, peer %v, identity %v; want %v, %v, %v", gotGrant, gotPeer, gotIdentity, tt.wantGrant, tt.wantPeer, tt.wantIdentity)
			}
			if gotPeer && gotID != id || gotIdentity && identity != id {
				t.Errorf("IDs %v, %v, want %v", gotID, identity, id)
			}
		})
	}
}

// TestPickHint picks the SVID with the hint, and nothing when none has it.
func TestPickHint(t *testing.T) {
	svids := []*x509svid.SVID{{Hint: ""}, {Hint: "g1"}, {Hint: "g2"}}
	if got := PickHint("g2")(svids); got != svids[2] {
		t.Errorf("PickHint(g2) = %v", got)
	}
	if got := PickHint("g3")(svids); got != nil {
		t.Errorf("PickHint(g3) = %v, want nil", got)
	}
}

// TestWorkloadDialOptionsFails: no Workload API, no dial options.
func TestWorkloadDialOptionsFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///nonexistent/jitgrant-test.sock")
	if _, _, err := WorkloadDialOptions(ctx, "g", nil); err == nil || !strings.HasPrefix(err.Error(), "verifier: workload API") {
		t.Errorf("WorkloadDialOptions: %v", err)
	}
}
