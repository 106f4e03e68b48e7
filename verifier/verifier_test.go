package verifier_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type rpc struct {
	method, resource string
	want             codes.Code
	wantMsg          string // substring of the status message, when denied
}

func runRPCs(t *testing.T, cc *grpc.ClientConn, wantGrant string, rpcs []rpc) {
	t.Helper()
	for _, r := range rpcs {
		got, err := call(cc, r.method, r.resource)
		if code := status.Code(err); code != r.want {
			t.Errorf("%s(%q): code %v (%v), want %v", r.method, r.resource, code, err, r.want)
			continue
		}
		if r.want != codes.OK {
			if msg := status.Convert(err).Message(); !strings.Contains(msg, r.wantMsg) {
				t.Errorf("%s(%q): message %q, want it to contain %q", r.method, r.resource, msg, r.wantMsg)
			}
			continue
		}
		if got != wantGrant {
			t.Errorf("%s(%q): handler saw grant %q, want %q", r.method, r.resource, got, wantGrant)
		}
	}
}

func TestMethodAndResourceScopes(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		scopes []grant.Scope
		rpcs   []rpc
	}{
		{
			name:   "one method",
			scopes: scopes(mGetBalance),
			rpcs: []rpc{
				{mGetBalance, "", codes.OK, ""},
				{mRefund, "accounts/1", codes.PermissionDenied, "jitgrant: no grant for " + mRefund},
				{mOther, "", codes.PermissionDenied, "no grant for " + mOther},
			},
		},
		{
			name:   "service wildcard",
			scopes: scopes("/bank.v1.Ledger/*"),
			rpcs: []rpc{
				{mGetBalance, "", codes.OK, ""},
				{mRefund, "accounts/1", codes.OK, ""},
				{mTransfer, "", codes.OK, ""},
				{mOther, "", codes.PermissionDenied, "no grant for " + mOther},
			},
		},
		{
			name:   "resource patterns",
			scopes: []grant.Scope{{Method: mRefund, Resources: []string{"accounts/*"}}},
			rpcs: []rpc{
				{mRefund, "accounts/42", codes.OK, ""},
				{mRefund, "loans/42", codes.PermissionDenied, "resource not granted for " + mRefund},
				{mRefund, "accounts/42/x", codes.PermissionDenied, "resource not granted"},
				{mRefund, "", codes.PermissionDenied, "resource not granted"},
				{mTransfer, "accounts/42", codes.PermissionDenied, "no grant for " + mTransfer},
			},
		},
		{
			name:   "resource scope on a method without a resource field fails closed",
			scopes: []grant.Scope{{Method: mGetBalance, Resources: []string{"accounts/*"}}},
			rpcs:   []rpc{{mGetBalance, "accounts/1", codes.PermissionDenied, "resource not granted"}},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "grant-" + string(rune('a'+i))
			cc := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: id, Scopes: tt.scopes}))
			runRPCs(t, cc, id, tt.rpcs)
			// Public methods need no grant scope.
			if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("health check with a grant: %v", err)
			}
		})
	}
}

func TestIdentityWithoutGrant(t *testing.T) {
	e := newEnv(t, nil)
	cc := e.dial(e.mint(clientID, time.Hour, nil))
	runRPCs(t, cc, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "jitgrant: no grant for " + mGetBalance}})
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check with an identity SVID: %v", err)
	}
	if !strings.Contains(e.logs.String(), "reason=no_grant") || !strings.Contains(e.logs.String(), clientID.String()) {
		t.Errorf("denial not logged with reason and peer:\n%s", e.logs)
	}
}

func TestHandshakeRefusesForeignCertificates(t *testing.T) {
	e := newEnv(t, nil)
	otherTD := spiffeid.RequireTrustDomainFromString("other.org")
	foreign := newCA(t, otherTD, e.clock.Now)
	impostor := newCA(t, td, e.clock.Now) // same trust domain, another key
	g := &grant.Grant{ID: "g1", Scopes: scopes(mGetBalance)}
	tests := []struct {
		name string
		svid *x509svid.SVID
	}{
		{"another trust domain", mintFrom(t, foreign, spiffeid.RequireFromPath(otherTD, "/w"), g)},
		{"another CA of the same trust domain", mintFrom(t, impostor, clientID, g)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := e.dial(tt.svid)
			_, err := call(cc, mGetBalance, "")
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call with a %s certificate: %v, want the handshake to fail (Unavailable)", tt.name, err)
			}
		})
	}
	if metricValue(t, e.v, "jitgrant_verifier_handshakes_total", "failed") == 0 {
		t.Error("failed handshakes not counted")
	}
}

func TestExpiryOnOpenConnection(t *testing.T) {
	e := newEnv(t, nil)
	cc := e.dial(e.mint(clientID, 2*time.Minute, &grant.Grant{ID: "short", Scopes: scopes(mGetBalance)}))
	runRPCs(t, cc, "short", []rpc{{mGetBalance, "", codes.OK, ""}})
	e.clock.Add(3 * time.Minute) // the connection stays open
	runRPCs(t, cc, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "jitgrant: grant expired"}})
	if cc.GetState().String() != "READY" {
		t.Errorf("connection state %v: the denial should not need a reconnect", cc.GetState())
	}
}

func TestRevocationOnOpenConnection(t *testing.T) {
	e := newEnv(t, nil)
	cc := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "revoke-me", Scopes: scopes(mGetBalance)}))
	other := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "keep-me", Scopes: scopes(mGetBalance)}))
	runRPCs(t, cc, "revoke-me", []rpc{{mGetBalance, "", codes.OK, ""}})
	e.v.Revocations().Revoke("revoke-me", e.clock.Now().Add(5*time.Minute))
	runRPCs(t, cc, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "jitgrant: grant revoked"}})
	runRPCs(t, other, "keep-me", []rpc{{mGetBalance, "", codes.OK, ""}})
}

func TestUseLimits(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name  string
		limit uint32
		calls int
	}{
		{"one-shot", 1, 3},
		{"three uses", 3, 5},
		{"unlimited", 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.ReplaceAll(tt.name, " ", "-")
			svid := e.mint(clientID, 5*time.Minute, &grant.Grant{ID: id, Scopes: scopes(mGetBalance), UseLimit: tt.limit})
			// Two connections with the same grant share its count.
			conns := []*grpc.ClientConn{e.dial(svid), e.dial(svid)}
			for i := range tt.calls {
				want := codes.OK
				if tt.limit > 0 && i >= int(tt.limit) {
					want = codes.PermissionDenied
				}
				runRPCs(t, conns[i%2], id, []rpc{{mGetBalance, "", want, "use limit reached"}})
			}
		})
	}
}

func TestStreams(t *testing.T) {
	e := newEnv(t, nil)
	history := func(cc *grpc.ClientConn) error {
		s, err := cc.NewStream(context.Background(), testledger.StreamDesc(mHistory), mHistory)
		if err != nil {
			return err
		}
		if err := s.SendMsg(wrapperspb.String("")); err != nil {
			return err
		}
		s.CloseSend()
		for {
			if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
	deposit := func(cc *grpc.ClientConn, resources ...string) error {
		s, err := cc.NewStream(context.Background(), testledger.StreamDesc(mDeposit), mDeposit)
		if err != nil {
			return err
		}
		for _, r := range resources {
			if err := s.SendMsg(wrapperspb.String(r)); err != nil {
				break // the server ended the stream; RecvMsg tells why
			}
		}
		s.CloseSend()
		return s.RecvMsg(new(wrapperspb.StringValue))
	}
	withHistory := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "h", Scopes: scopes(mHistory)}))
	withDeposit := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "d", Scopes: []grant.Scope{{Method: mDeposit, Resources: []string{"accounts/*"}}}}))
	tests := []struct {
		name string
		run  func() error
		want codes.Code
	}{
		{"server stream in scope", func() error { return history(withHistory) }, codes.OK},
		{"server stream out of scope", func() error { return history(withDeposit) }, codes.PermissionDenied},
		{"client stream, every resource in scope", func() error { return deposit(withDeposit, "accounts/1", "accounts/2") }, codes.OK},
		{"client stream, second resource out of scope", func() error { return deposit(withDeposit, "accounts/1", "loans/2") }, codes.PermissionDenied},
		{"client stream out of scope", func() error { return deposit(withHistory, "accounts/1") }, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); status.Code(err) != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecisionMetrics(t *testing.T) {
	e := newEnv(t, nil)
	cc := e.dial(e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "m", Scopes: scopes(mGetBalance)}))
	call(cc, mGetBalance, "")
	call(cc, mGetBalance, "")
	call(cc, mTransfer, "x")
	for _, tc := range []struct {
		decision, reason string
		want             float64
	}{
		{"allow", "allowed", 2},
		{"deny", "method_not_in_scope", 1},
		{"deny", "revoked", 0},
	} {
		got := metricValue(t, e.v, "jitgrant_verifier_decisions_total", tc.decision, tc.reason)
		if got != tc.want {
			t.Errorf("decisions{%s,%s} = %v, want %v", tc.decision, tc.reason, got, tc.want)
		}
	}
	if problems, err := testutil.CollectAndLint(e.v.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("collector lint: %v %v", problems, err)
	}
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t, nil)
	good := verifier.Config{SVIDSource: e.mint(serverID, time.Hour, nil), BundleSource: e.ca.Bundle()}
	tests := []struct {
		name    string
		mutate  func(*verifier.Config)
		wantErr string
	}{
		{"no SVID source", func(c *verifier.Config) { c.SVIDSource = nil }, "SVIDSource is required"},
		{"no bundle source", func(c *verifier.Config) { c.BundleSource = nil }, "BundleSource is required"},
		{"bad public method", func(c *verifier.Config) { c.PublicMethods = []string{"health"} }, "public method"},
		{"bad identity method", func(c *verifier.Config) { c.IdentityMethods = []string{"/a.B"} }, "identity method"},
		{"wildcard resource method", func(c *verifier.Config) { c.ResourceFields = map[string]string{"/a.B/*": "x"} }, "want a full method name"},
		{"bad field path", func(c *verifier.Config) { c.ResourceFields = map[string]string{"/a.B/C": "x..y"} }, "want a field name or dotted path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			if _, err := verifier.New(cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := verifier.New(good); err != nil {
		t.Errorf("New(good): %v", err)
	}
}

// metricValue gathers the verifier's collector and returns the value of the
// named metric whose label values are labels, in order.
func metricValue(t *testing.T, v *verifier.Verifier, name string, labels ...string) float64 {
	t.Helper()
	return collectorValue(t, v.Collector(), name, labels...)
}

// collectorValue is metricValue for any collector.
func collectorValue(t *testing.T, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func mintFrom(t *testing.T, c *ca.CA, id spiffeid.ID, g *grant.Grant) *x509svid.SVID {
	t.Helper()
	svid, err := c.Mint(ca.Request{ID: id, TTL: 5 * time.Minute, Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// TestClientNamesClockSkew: a client whose clock is behind the server's
// certificate learns from the error that its clock is the cause.
func TestClientNamesClockSkew(t *testing.T) {
	ahead := newCA(t, td, func() time.Time { return time.Now().Add(5 * time.Minute) })
	srvSVID := mintFrom(t, ahead, serverID, nil)
	srv := grpc.NewServer(grpc.Creds(grpccredentials.MTLSServerCredentials(srvSVID, ahead.Bundle(), tlsconfig.AuthorizeAny())))
	srv.RegisterService(testledger.ServiceDesc(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	creds := verifier.ClientCredentials(mintFrom(t, ahead, clientID, nil), ahead.Bundle(), tlsconfig.AuthorizeID(serverID)).Clone()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	_, err = call(cc, mGetBalance, "")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "ahead of this machine's clock: check this machine's clock (NTP)") {
		t.Fatalf("call to a server whose certificate starts ahead of this clock: %v", err)
	}
}
