package e2e

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/jitgrant/jitgrant/internal/jitd"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TestRevocationFeedNeedsPermission: over the API, following revocations,
// reporting uses and acknowledging them are PermissionDenied to a caller
// without watch_revocations, whatever the arguments; a refused use report
// leaves the grant as it was.
func TestRevocationFeedNeedsPermission(t *testing.T) {
	e := newEnv(t, nil)
	id, _ := e.request(dev, "--scope", mBalance, "--ttl", "5m")
	e.wantState(dev, id, pb.State_STATE_ISSUED)
	ctx := context.Background()
	tests := []struct {
		name string
		call func(pb.IssuerClient) error
	}{
		{"watch", func(c pb.IssuerClient) error {
			s, err := c.WatchRevocations(ctx, &pb.WatchRevocationsRequest{StreamId: "s"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"report a use of someone's grant", func(c pb.IssuerClient) error {
			_, err := c.ReportUse(ctx, &pb.ReportUseRequest{GrantId: id, Uses: 1})
			return err
		}},
		{"report no use of a malformed ID", func(c pb.IssuerClient) error {
			_, err := c.ReportUse(ctx, &pb.ReportUseRequest{GrantId: "x"})
			return err
		}},
		{"acknowledge without a stream ID", func(c pb.IssuerClient) error {
			_, err := c.AckRevocations(ctx, &pb.AckRevocationsRequest{GrantIds: []string{id}})
			return err
		}},
	}
	for _, who := range []string{mallory, dev} {
		c := e.client(who)
		for _, tt := range tests {
			t.Run(who+" "+tt.name, func(t *testing.T) {
				if err := tt.call(c); status.Code(err) != codes.PermissionDenied {
					t.Errorf("%v, want PermissionDenied", err)
				}
			})
		}
	}
	if r := e.wantState(dev, id, pb.State_STATE_ISSUED); r.GetUses() != 0 {
		t.Errorf("the grant counts %d uses after refused reports", r.GetUses())
	}
}

// TestUnauthenticatedCallRefused: a client without an SVID gets no answer
// from the issuer API.
func TestUnauthenticatedCallRefused(t *testing.T) {
	e := newEnv(t, nil)
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	bundle, err := x509bundle.Load(td, filepath.Join(e.ids[dev], "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// The server is authenticated; the client presents no certificate.
	cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(jitd.ServerID(td)))
	cfg.MinVersion = tls.VersionTLS12
	cc, err := grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = pb.NewIssuerClient(cc).CreateRequest(context.Background(), &pb.CreateRequestRequest{Scopes: []*pb.Scope{{Method: mBalance}}})
	if code := status.Code(err); code != codes.Unauthenticated && code != codes.Unavailable {
		t.Errorf("CreateRequest without an SVID: %v, want Unauthenticated or Unavailable", err)
	}
	if got := e.listAll(); len(got) != 0 {
		t.Errorf("requests stored: %v", got)
	}
}

// TestTTLBelowMinimum: jitctl request with a TTL below the issuer's
// minimum (30s) is refused naming ttl, and nothing is stored.
func TestTTLBelowMinimum(t *testing.T) {
	e := newEnv(t, nil)
	for _, ttl := range []string{"1ns", "1ms", "1s", "29s"} {
		e.fails(dev, []string{"request", "--scope", mBalance, "--ttl", ttl}, "ttl", "minimum of 30s")
	}
	if got := e.listAll(); len(got) != 0 {
		t.Errorf("requests stored: %v", got)
	}
	id, _ := e.request(dev, "--scope", mBalance, "--ttl", "30s")
	e.wantState(dev, id, pb.State_STATE_ISSUED)
}
