package wlapi_test

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// calls makes one call of every Workload API method with ctx and returns
// its error (for a stream, that of the first message).
func calls(c workload.SpiffeWorkloadAPIClient) []struct {
	name string
	call func(ctx context.Context) error
} {
	return []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"FetchX509SVID", func(ctx context.Context) error {
			s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"FetchX509Bundles", func(ctx context.Context) error {
			s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"FetchJWTSVID", func(ctx context.Context) error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
			return err
		}},
		{"FetchJWTBundles", func(ctx context.Context) error {
			s, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"ValidateJWTSVID", func(ctx context.Context) error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x.y.z"})
			return err
		}},
	}
}

// TestMissingHeader: a call without the security header fails with
// InvalidArgument, before attestation.
func TestMissingHeader(t *testing.T) {
	e := newEnv(t, uid)
	for _, tc := range calls(e.rawClient()) {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(testContext(t))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
}

// TestNoIdentity: a caller that no entry matches gets PermissionDenied
// from every method, through go-spiffe's client too.
func TestNoIdentity(t *testing.T) {
	e := newEnv(t, uid+1)
	for _, tc := range calls(e.rawClient()) {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(withHeader(testContext(t)))
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("got %v, want PermissionDenied", err)
			}
		})
	}
	ctx := testContext(t)
	if _, err := workloadapi.FetchX509Context(ctx, e.addr()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchX509Context: %v, want PermissionDenied", err)
	}
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, e.addr()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchJWTSVID: %v, want PermissionDenied", err)
	}
}
