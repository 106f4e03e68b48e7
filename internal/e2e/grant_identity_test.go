package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// grantClient returns an issuer API client that presents the grant
// certificate jitctl wrote to dir, as a thief holding it would.
func (e *env) grantClient(dir string) pb.IssuerClient {
	e.t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, "grant.pem"), filepath.Join(dir, "grant.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	bundle, err := x509bundle.Load(td, filepath.Join(dir, "bundle.pem"))
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(jitd.ServerID(td)))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return pb.NewIssuerClient(cc)
}

// TestGrantIsNotAnIdentity: a grant certificate and its key do not stand for
// their holder on the issuer API. Creating (and so renewing itself through
// auto-approval), approving, listing, revoking and following revocations
// with one are all refused with a message that says so, logged and counted;
// the holders' identity SVIDs still work.
func TestGrantIsNotAnIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *jitd.ServeConfig) { c.MetricsListen = "127.0.0.1:0" })

	// dev and alice (an approver) each hold an auto-approved grant.
	devGrant, devDir := e.request(dev, "--scope", mBalance, "--ttl", "5m", "--wait")
	_, aliceDir := e.request(alice, "--scope", mBalance, "--ttl", "5m", "--wait")
	e.wantState(dev, devGrant, pb.State_STATE_ISSUED)
	refund, _ := e.refund("INC-7")
	thief, approver := e.grantClient(devDir), e.grantClient(aliceDir)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"create (auto-approved)", func() error {
			_, err := thief.CreateRequest(ctx, &pb.CreateRequestRequest{
				Scopes: []*pb.Scope{{Method: mBalance}}, Ttl: durationpb.New(5 * time.Minute)})
			return err
		}},
		{"approve as the approver", func() error {
			_, err := approver.ApproveRequest(ctx, &pb.ReviewRequest{Id: refund})
			return err
		}},
		{"deny as the approver", func() error {
			_, err := approver.DenyRequest(ctx, &pb.ReviewRequest{Id: refund})
			return err
		}},
		{"list", func() error { _, err := thief.ListRequests(ctx, &pb.ListRequestsRequest{}); return err }},
		{"get", func() error { _, err := thief.GetRequest(ctx, &pb.GetRequestRequest{Id: devGrant}); return err }},
		{"fetch", func() error { _, err := thief.FetchGrant(ctx, &pb.FetchGrantRequest{Id: devGrant}); return err }},
		{"revoke", func() error { _, err := thief.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: devGrant}); return err }},
		{"watch revocations", func() error {
			s, err := thief.WatchRevocations(ctx, &pb.WatchRevocationsRequest{StreamId: "thief"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"watch requests", func() error {
			s, err := thief.WatchRequests(ctx, &pb.WatchRequestsRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != verifier.MsgGrantNotIdentity {
				t.Errorf("with a grant certificate: %v, want PermissionDenied %q", err, verifier.MsgGrantNotIdentity)
			}
		})
	}

	// jitctl with a grant as --cert says why it is refused.
	var out, errOut bytes.Buffer
	code := jitctl.Main(ctx, []string{"--server", e.srv.Addr(),
		"--cert", filepath.Join(devDir, "grant.pem"), "--key", filepath.Join(devDir, "grant.key"), "--bundle", filepath.Join(devDir, "bundle.pem"),
		"request", "--scope", mBalance, "--ttl", "5m", "--out", filepath.Join(t.TempDir(), "g")}, &out, &errOut)
	if code != jitctl.ExitDenied || !strings.Contains(errOut.String(), "a grant certificate is not an identity") {
		t.Errorf("jitctl request --cert grant.pem: exit %d, stderr %q", code, errOut.String())
	}

	// Nothing happened: no approval counted, the grant not revoked, no new
	// request.
	if r := e.wantState(bob, refund, pb.State_STATE_PENDING); len(r.GetReviews()) != 0 {
		t.Errorf("a grant certificate's review was recorded: %v", r.GetReviews())
	}
	e.wantState(dev, devGrant, pb.State_STATE_ISSUED)
	if n := len(e.listAll()); n != 3 {
		t.Errorf("%d requests, want the 3 made with identity SVIDs", n)
	}
	// Logged and counted.
	if !strings.Contains(e.logs.String(), "reason=grant_not_identity") || !strings.Contains(e.logs.String(), "grant="+devGrant) {
		t.Errorf("the refusals are not logged with their reason and grant:\n%s", e.logs)
	}
	body := scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics")
	if v, _ := metric(body, "jitgrant_verifier_decisions_total", `decision="deny",reason="grant_not_identity"`); v < float64(len(calls)+1) {
		t.Errorf("grant_not_identity denials counted %v, want at least %d", v, len(calls)+1)
	}

	// The identity SVIDs still work.
	if _, err := e.client(alice).ApproveRequest(ctx, &pb.ReviewRequest{Id: refund}); err != nil {
		t.Errorf("approve with alice's identity SVID: %v", err)
	}
	if _, err := e.client(dev).ListRequests(ctx, &pb.ListRequestsRequest{}); err != nil {
		t.Errorf("list with dev's identity SVID: %v", err)
	}
}
