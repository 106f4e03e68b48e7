package verifier_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPlainGoSPIFFEAcceptsGrant shows why the grant extension is
// non-critical: software that knows nothing of grants still takes a grant
// SVID as the holder's identity.
func TestPlainGoSPIFFEAcceptsGrant(t *testing.T) {
	e := newEnv(t, nil)
	svid := e.mint(clientID, 5*time.Minute, &grant.Grant{ID: "plain", Scopes: scopes(mGetBalance)})
	id, _, err := x509svid.Verify(svid.Certificates, e.ca.Bundle(), x509svid.WithTime(e.clock.Now()))
	if err != nil || id != clientID {
		t.Fatalf("x509svid.Verify: %v, %v", id, err)
	}

	// A server protected by go-spiffe alone (real time: its handshake has no
	// clock hook, so mint with a CA on the real clock).
	rt := newCA(t, td, time.Now)
	srvSVID, err := rt.Mint(caRequest(serverID, nil))
	if err != nil {
		t.Fatal(err)
	}
	cliSVID, err := rt.Mint(caRequest(clientID, &grant.Grant{ID: "plain", Scopes: scopes(mGetBalance)}))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(grpccredentials.MTLSServerCredentials(srvSVID, rt.Bundle(), tlsconfig.AuthorizeAny())))
	srv.RegisterService(testledger.ServiceDesc(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(cliSVID, rt.Bundle(), tlsconfig.AuthorizeID(serverID))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := call(cc, mGetBalance, ""); err != nil {
		t.Fatalf("plain go-spiffe server refused a grant SVID: %v", err)
	}
}

// TestAuthzSeesSPIFFEID chains grpc-go's authz interceptor after the
// verifier's: its principal rules match the peer's SPIFFE ID only if the
// AuthInfo is grpc-go's own credentials.TLSInfo.
func TestAuthzSeesSPIFFEID(t *testing.T) {
	policy := `{
		"name": "ledger",
		"allow_rules": [{
			"name": "payments-may-read",
			"source": {"principals": ["` + clientID.String() + `"]},
			"request": {"paths": ["` + mGetBalance + `"]}
		}]
	}`
	az, err := authz.NewStatic(policy)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil, grpc.ChainUnaryInterceptor(az.UnaryInterceptor))
	g := &grant.Grant{ID: "az", Scopes: scopes(mGetBalance, mTransfer)}
	tests := []struct {
		name   string
		id     string
		method string
		want   codes.Code
	}{
		{"principal and path match", clientID.String(), mGetBalance, codes.OK},
		{"path not in authz policy", clientID.String(), mTransfer, codes.PermissionDenied},
		{"another principal", "spiffe://example.org/workload/other", mGetBalance, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := e.dial(e.mint(mustID(t, tt.id), 5*time.Minute, g))
			_, err := call(cc, tt.method, "x")
			if status.Code(err) != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDependencies guards what a protected service pulls in: verifier and
// grant must import neither storage, nor the policy engine, nor the issuer.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.CommandContext(context.Background(), "go", "list", "-deps",
		"github.com/jitgrant/jitgrant/verifier", "github.com/jitgrant/jitgrant/grant").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"github.com/dgraph-io/badger", "cel.dev/cel-go", "github.com/google/cel-go",
		"github.com/jitgrant/jitgrant/issuer", "github.com/jitgrant/jitgrant/policy", "github.com/jitgrant/jitgrant/audit"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("verifier or grant depends on %s", dep)
			}
		}
	}
}
