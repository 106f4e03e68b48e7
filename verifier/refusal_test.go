package verifier_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/syncbuf"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// rawCA is a CA of the test trust domain made with crypto/x509 alone, so
// that it signs what issuer/ca refuses to mint: certificates without a URI
// SAN, with a bad SPIFFE ID or a malformed grant extension. Verifiers of the
// refusal tests trust it, so these certificates get past the chain check.
type rawCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newRawCA(t *testing.T) *rawCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		URIs: []*url.URL{td.ID().URL()}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &rawCA{cert: cert, key: key}
}

// leaf signs a client certificate with the given URI SANs and extensions.
func (c *rawCA) leaf(t *testing.T, uris []string, exts ...pkix.Extension) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		ExtraExtensions: exts, DNSNames: []string{"client.example.org"},
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// trusting returns a config mutation that adds raw's certificate to the
// verifier's trust bundle.
func trusting(raw *rawCA, more func(*verifier.Config)) func(*verifier.Config) {
	return func(c *verifier.Config) {
		b := c.BundleSource.(*x509bundle.Bundle)
		c.BundleSource = x509bundle.FromX509Authorities(td, append(b.X509Authorities(), raw.cert))
		if more != nil {
			more(c)
		}
	}
}

// logLine reports whether one line of logs contains every one of want.
func logLine(logs *syncbuf.Buffer, want ...string) bool {
next:
	for line := range strings.SplitSeq(logs.String(), "\n") {
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		return true
	}
	return false
}

// TestRefusals: every way the verifier refuses a call, with the status code
// and message the client sees and the log line that says why.
func TestRefusals(t *testing.T) {
	raw := newRawCA(t)
	e := newEnv(t, trusting(raw, func(c *verifier.Config) { c.IdentityMethods = []string{mNestWho} }))
	// A verifier whose revocation feed has never reached the issuer.
	idle, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idle.Close() })
	fe := newEnv(t, func(c *verifier.Config) {
		feed, err := verifier.NewFeed(verifier.FeedConfig{Client: pb.NewIssuerClient(idle), Clock: c.Clock})
		if err != nil {
			t.Fatal(err)
		}
		c.Revocations = feed
	})

	withGrant := func(env *env, id string, s ...grant.Scope) *grpc.ClientConn {
		return env.dial(env.mint(clientID, 5*time.Minute, &grant.Grant{ID: id, Scopes: s}))
	}
	notYet := func() *grpc.ClientConn {
		// Minted two minutes ahead of the verifier's clock, as by an
		// issuer whose clock is ahead.
		e.clock.Add(2 * time.Minute)
		svid := e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "not-yet", Scopes: scopes(mGetBalance)})
		e.clock.Add(-2 * time.Minute)
		return e.dial(svid)
	}
	unary := func(method, resource string) func(*grpc.ClientConn) error {
		return func(cc *grpc.ClientConn) error { _, err := call(cc, method, resource); return err }
	}
	nest := func(method, resource string) func(*grpc.ClientConn) error {
		return func(cc *grpc.ClientConn) error { _, err := nestCall(cc, method, resource); return err }
	}
	put := func(resources ...string) func(*grpc.ClientConn) error {
		return func(cc *grpc.ClientConn) error { _, err := nestPut(cc, resources...); return err }
	}
	refundScope := grant.Scope{Method: mRefund, Resources: []string{"accounts/*"}}
	nestScopes := []grant.Scope{{Method: mNestGet, Resources: []string{"accounts/*"}}, {Method: mNestPut, Resources: []string{"accounts/*"}}}

	tests := []struct {
		name     string
		env      *env
		conn     func() *grpc.ClientConn
		call     func(*grpc.ClientConn) error
		wantCode codes.Code
		wantMsg  []string // in the status message
		wantLog  []string // together on one line of the verifier's log
	}{
		{
			name: "peer with no URI SAN", env: e,
			conn:     func() *grpc.ClientConn { return e.dial(raw.leaf(t, nil)) },
			call:     unary(mGetBalance, ""),
			wantCode: codes.Unavailable,
			wantLog:  []string{"handshake failed", "no URI SAN"},
		},
		{
			name: "bad SPIFFE ID", env: e,
			conn:     func() *grpc.ClientConn { return e.dial(raw.leaf(t, []string{"https://example.org/workload"})) },
			call:     unary(mGetBalance, ""),
			wantCode: codes.Unavailable,
			wantLog:  []string{"handshake failed", "could not get leaf SPIFFE ID"},
		},
		{
			name: "malformed grant extension", env: e,
			conn: func() *grpc.ClientConn {
				return e.dial(raw.leaf(t, []string{clientID.String()}, pkix.Extension{Id: grant.OID, Value: []byte{0x30, 0x01, 0x00}}))
			},
			call:     unary(mGetBalance, ""),
			wantCode: codes.Unavailable,
			wantLog:  []string{"handshake refused", clientID.String(), "grant: invalid"},
		},
		{
			name: "no peer", env: e,
			conn: func() *grpc.ClientConn { return nil },
			call: func(*grpc.ClientConn) error {
				_, err := e.v.UnaryInterceptor(context.Background(), wrapperspb.String(""), &grpc.UnaryServerInfo{FullMethod: mGetBalance},
					func(context.Context, any) (any, error) { t.Error("handler called without a peer"); return nil, nil })
				return err
			},
			wantCode: codes.Unauthenticated,
			wantMsg:  []string{"jitgrant: peer not verified"},
			wantLog:  []string{"RPC denied", "reason=unauthenticated", mGetBalance},
		},
		{
			name: "resource field that cannot be read", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "unreadable", grant.Scope{Method: mNestBad}) },
			call:     nest(mNestBad, "accounts/1"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: resource not granted for " + mNestBad},
			wantLog:  []string{"reason=resource_field_unreadable", "grant=unreadable"},
		},
		{
			name: "grant not yet valid", env: e,
			conn:     notYet,
			call:     unary(mGetBalance, ""),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: grant not yet valid", "ahead of this server's clock", "clock skew"},
			wantLog:  []string{"reason=not_yet_valid", "grant=not-yet", "NTP"},
		},
		{
			name: "nested resource, unary, in scope", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "nest-ok", nestScopes...) },
			call:     nest(mNestGet, "accounts/1"),
			wantCode: codes.OK,
		},
		{
			name: "nested resource, unary, out of scope", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "nest-out", nestScopes...) },
			call:     nest(mNestGet, "loans/1"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: resource not granted for " + mNestGet},
			wantLog:  []string{"reason=resource_not_in_scope", "grant=nest-out", "resource=loans/1"},
		},
		{
			name: "nested resource, unary, parent message unset", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "nest-unset", nestScopes...) },
			call:     nest(mNestGet, "-"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: resource not granted for " + mNestGet},
			wantLog:  []string{"reason=resource_not_in_scope", "grant=nest-unset"},
		},
		{
			name: "nested resource, stream, every message in scope", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "put-ok", nestScopes...) },
			call:     put("accounts/1", "accounts/2"),
			wantCode: codes.OK,
		},
		{
			name: "nested resource, stream, second message out of scope", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "put-out", nestScopes...) },
			call:     put("accounts/1", "loans/2"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: resource not granted for " + mNestPut},
			wantLog:  []string{"reason=resource_not_in_scope", "grant=put-out", "resource=loans/2"},
		},
		{
			name: "nested resource, stream, dot-dot segment", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "put-dots", nestScopes...) },
			call:     put("accounts/1", "accounts/.."),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{`jitgrant: resource refused for ` + mNestPut + `: empty, "." or ".." segment`},
			wantLog:  []string{"reason=resource_not_canonical", "grant=put-dots", "resource=accounts/.."},
		},
		{
			name: "dot-dot segment under a wildcard", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "dots", refundScope) },
			call:     unary(mRefund, "accounts/.."),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{`jitgrant: resource refused for ` + mRefund},
			wantLog:  []string{"reason=resource_not_canonical", "grant=dots", "resource=accounts/.."},
		},
		{
			name: "dot segment on a method granted for any resource", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "any-dot", grant.Scope{Method: mTransfer}) },
			call:     unary(mTransfer, "accounts/./1"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{`jitgrant: resource refused for ` + mTransfer},
			wantLog:  []string{"reason=resource_not_canonical", "grant=any-dot"},
		},
		{
			name: "resource scope on a method the service reads no resource for", env: e,
			conn: func() *grpc.ClientConn {
				return withGrant(e, "no-field", grant.Scope{Method: mGetBalance, Resources: []string{"accounts/*"}})
			},
			call:     unary(mGetBalance, "accounts/1"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: resource not granted for " + mGetBalance, "this service reads none"},
			wantLog:  []string{"reason=resource_scope_without_field", "grant=no-field", "ResourceFields"},
		},
		{
			name: "grant certificate on an identity method", env: e,
			conn:     func() *grpc.ClientConn { return withGrant(e, "not-an-identity", grant.Scope{Method: mNestWho}) },
			call:     nest(mNestWho, ""),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{verifier.MsgGrantNotIdentity},
			wantLog:  []string{"reason=grant_not_identity", "grant=not-an-identity", clientID.String()},
		},
		{
			name: "identity SVID on an identity method", env: e,
			conn:     func() *grpc.ClientConn { return e.dial(e.mint(clientID, time.Hour, nil)) },
			call:     nest(mNestWho, ""),
			wantCode: codes.OK,
		},
		{
			name: "before the revocation feed first connects", env: fe,
			conn:     func() *grpc.ClientConn { return withGrant(fe, "early", scopes(mGetBalance)...) },
			call:     unary(mGetBalance, ""),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: revocation status unknown"},
			wantLog:  []string{"reason=revocations_stale", "grant=early"},
		},
		{
			name: "before the revocation feed first connects, stream", env: fe,
			conn:     func() *grpc.ClientConn { return withGrant(fe, "early-put", nestScopes...) },
			call:     put("accounts/1"),
			wantCode: codes.PermissionDenied,
			wantMsg:  []string{"jitgrant: revocation status unknown"},
			wantLog:  []string{"reason=revocations_stale", "grant=early-put"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.conn())
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			msg := status.Convert(err).Message()
			for _, w := range tt.wantMsg {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			// A refused handshake can reach the client before the server
			// has logged it: wait for the line.
			if len(tt.wantLog) > 0 {
				for deadline := time.Now().Add(10 * time.Second); !logLine(tt.env.logs, tt.wantLog...); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no log line with all of %q in:\n%s", tt.wantLog, tt.env.logs)
					}
				}
			}
		})
	}
	for _, tc := range []struct {
		metric string
		labels []string
	}{
		{"jitgrant_verifier_handshakes_total", []string{"failed"}},
		{"jitgrant_verifier_decisions_total", []string{"deny", "grant_not_identity"}},
		{"jitgrant_verifier_decisions_total", []string{"deny", "resource_not_canonical"}},
		{"jitgrant_verifier_decisions_total", []string{"deny", "resource_scope_without_field"}},
		{"jitgrant_verifier_decisions_total", []string{"deny", "not_yet_valid"}},
		{"jitgrant_verifier_decisions_total", []string{"allow", "public_method"}},
	} {
		if metricValue(t, e.v, tc.metric, tc.labels...) == 0 {
			t.Errorf("%s%v not counted", tc.metric, tc.labels)
		}
	}
}
