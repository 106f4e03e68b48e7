// Package access is the workload side of jitgrant as the examples use it:
// the workload's identity from the SPIFFE Workload API, access requests to
// jitd made with that identity, and connections to a protected service made
// with the grant SVID that the Workload API delivers next to the identity
// (its hint is the grant ID).
package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Client asks jitd for grants with the workload's own identity.
type Client struct {
	// API is the issuer API, called with the workload's identity SVID.
	API pb.IssuerClient
	// ID is the workload's SPIFFE ID.
	ID spiffeid.ID

	wl     workloadapi.SourceOption
	source *workloadapi.X509Source
	cc     *grpc.ClientConn
}

// Dial gets the workload's identity from the Workload API at workloadSocket
// (unix:///path) and connects to jitd at issuerAddr with it; jitd must
// present spiffe://<trust domain>/jitd. Close releases both.
func Dial(ctx context.Context, workloadSocket, issuerAddr string) (*Client, error) {
	if workloadSocket == "" {
		return nil, errors.New("access: the Workload API address is required")
	}
	wl := workloadapi.WithClientOptions(workloadapi.WithAddr(workloadSocket))
	source, err := workloadapi.NewX509Source(ctx, wl)
	if err != nil {
		return nil, fmt.Errorf("access: workload API: %w", err)
	}
	self, err := source.GetX509SVID()
	if err != nil {
		source.Close()
		return nil, fmt.Errorf("access: workload API: %w", err)
	}
	jitd := spiffeid.RequireFromPath(self.ID.TrustDomain(), "/jitd")
	cc, err := grpc.NewClient(issuerAddr, grpc.WithTransportCredentials(
		verifier.ClientCredentials(source, source, tlsconfig.AuthorizeID(jitd))))
	if err != nil {
		source.Close()
		return nil, fmt.Errorf("access: issuer %s: %w", issuerAddr, err)
	}
	return &Client{API: pb.NewIssuerClient(cc), ID: self.ID, wl: wl, source: source, cc: cc}, nil
}

// Close closes the issuer connection and the identity source.
func (c *Client) Close() error {
	return errors.Join(c.cc.Close(), c.source.Close())
}

// Request is an access request.
type Request struct {
	Scopes   []*pb.Scope
	TTL      time.Duration
	Reason   string
	UseLimit uint32 // 0: until expiry; 1: one call
}

// Request asks jitd for access and returns the stored request: issued at
// once when policy auto-approves it, pending otherwise.
func (c *Client) Request(ctx context.Context, r Request) (*pb.AccessRequest, error) {
	res, err := c.API.CreateRequest(ctx, &pb.CreateRequestRequest{
		Scopes: r.Scopes, Ttl: durationpb.New(r.TTL), Reason: r.Reason, UseLimit: r.UseLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("access: create request: %w", err)
	}
	return res.GetRequest(), nil
}

// WaitIssued follows the workload's requests until req is issued, and fails
// when it ends any other way or timeout passes.
func (c *Client) WaitIssued(ctx context.Context, req *pb.AccessRequest, timeout time.Duration) (*pb.AccessRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := c.API.WatchRequests(ctx, &pb.WatchRequestsRequest{Requester: req.GetRequester()})
	if err != nil {
		return nil, fmt.Errorf("access: watch requests: %w", err)
	}
	// The request may have moved before the stream started: read it again.
	if cur, err := c.API.GetRequest(ctx, &pb.GetRequestRequest{Id: req.GetId()}); err == nil {
		req = cur
	}
	for {
		if err := checkLive(req); err != nil {
			return nil, err
		}
		if req.GetState() == pb.State_STATE_ISSUED {
			return req, nil
		}
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("access: request %s: still %s after %v", req.GetId(), StateName(req.GetState()), timeout)
			}
			return nil, fmt.Errorf("access: watch requests: %w", err)
		}
		if ev.GetRequest().GetId() == req.GetId() {
			req = ev.GetRequest()
		}
	}
}

// checkLive fails for a request that ended without being issued.
func checkLive(req *pb.AccessRequest) error {
	switch req.GetState() {
	case pb.State_STATE_PENDING, pb.State_STATE_APPROVED, pb.State_STATE_ISSUED:
		return nil
	}
	return fmt.Errorf("access: request %s: %s", req.GetId(), StateName(req.GetState()))
}

// GrantConn is a connection to a protected service made with a grant SVID.
type GrantConn struct {
	*grpc.ClientConn
	source *workloadapi.X509Source
}

// Close closes the connection and its grant SVID source.
func (g *GrantConn) Close() error {
	return errors.Join(g.ClientConn.Close(), g.source.Close())
}

// Connect returns a connection to target, which must present server's SVID,
// made with the grant SVID of grantID. It waits up to timeout for the
// Workload API to deliver that SVID. The TLS handshake happens on the first
// call; the connection then keeps the certificate it presented, even once
// the Workload API has withdrawn it.
func (c *Client) Connect(ctx context.Context, grantID string, server spiffeid.ID, target string, timeout time.Duration) (*GrantConn, error) {
	opts, source, err := verifier.WorkloadDialOptions(ctx, grantID, tlsconfig.AuthorizeID(server), c.wl)
	if err != nil {
		return nil, fmt.Errorf("access: workload API: %w", err)
	}
	if err := waitSVID(ctx, source, timeout); err != nil {
		source.Close()
		return nil, fmt.Errorf("access: grant %s: %w", grantID, err)
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		source.Close()
		return nil, fmt.Errorf("access: %s: %w", target, err)
	}
	return &GrantConn{ClientConn: cc, source: source}, nil
}

// waitSVID waits until the source holds the grant SVID.
func waitSVID(ctx context.Context, source *workloadapi.X509Source, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := source.GetX509SVID()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SVID on the Workload API after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// StateName is a request state in lower case: "pending", "issued", ...
func StateName(s pb.State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

// ParseScopes turns scope arguments, /pkg.Service/Method[@resource] as
// jitctl takes them, into scopes, one per method with its resources.
func ParseScopes(values []string) ([]*pb.Scope, error) {
	var out []*pb.Scope
	byMethod := map[string]*pb.Scope{}
	for _, v := range values {
		method, res, hasRes := strings.Cut(strings.TrimSpace(v), "@")
		if err := grant.ValidateMethod(method); err != nil {
			return nil, fmt.Errorf("access: scope %q: %w", v, err)
		}
		if hasRes {
			if err := grant.ValidateResourcePattern(res); err != nil {
				return nil, fmt.Errorf("access: scope %q: %w", v, err)
			}
		}
		s, seen := byMethod[method]
		if !seen {
			s = &pb.Scope{Method: method}
			byMethod[method] = s
			out = append(out, s)
		} else if hasRes != (len(s.Resources) > 0) {
			return nil, fmt.Errorf("access: scope %q: %s is given both with and without resources", v, method)
		}
		if hasRes && !slices.Contains(s.Resources, res) {
			s.Resources = append(s.Resources, res)
		}
	}
	return out, nil
}
