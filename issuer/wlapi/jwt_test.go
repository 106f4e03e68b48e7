package wlapi_test

import (
	"testing"
	"time"

	ourjwt "github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const audience = "spiffe://example.org/service/ledger"

// TestJWTSVID fetches identity and grant tokens with go-spiffe's client and
// validates them through the server.
func TestJWTSVID(t *testing.T) {
	e := newEnv(t, uid)
	g := e.grant()
	ctx := testContext(t)
	svids, err := workloadapi.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: audience}, e.addr())
	if err != nil {
		t.Fatal(err)
	}
	if len(svids) != 3 || svids[0].ID != workloadID || svids[0].Hint != "" ||
		svids[1].ID.Path() != "/workload/other" || svids[2].ID != workloadID || svids[2].Hint != g.ID {
		t.Fatalf("got %d tokens: %v", len(svids), svids)
	}
	if exp := svids[2].Expiry; exp.After(g.NotAfter) {
		t.Errorf("grant token expires %v, after the grant %v", exp, g.NotAfter)
	}

	got, err := workloadapi.ValidateJWTSVID(ctx, svids[2].Marshal(), audience, e.addr())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != workloadID || got.Claims[ourjwt.ClaimGrantID] != g.ID {
		t.Errorf("validated %s with grant %v", got.ID, got.Claims[ourjwt.ClaimGrantID])
	}
	// The server's own answer carries the claims.
	resp, err := e.rawClient().ValidateJWTSVID(withHeader(ctx), &workload.ValidateJWTSVIDRequest{Audience: audience, Svid: svids[2].Marshal()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SpiffeId != workloadID.String() || resp.Claims.Fields[ourjwt.ClaimGrantID].GetStringValue() != g.ID ||
		len(resp.Claims.Fields[ourjwt.ClaimScopes].GetListValue().GetValues()) != 1 {
		t.Errorf("ValidateJWTSVID: %v", resp)
	}

	// Another audience, and a token past its expiry by the server's clock.
	if _, err := workloadapi.ValidateJWTSVID(ctx, svids[0].Marshal(), "spiffe://example.org/other", e.addr()); status.Code(err) != codes.InvalidArgument {
		t.Errorf("wrong audience: %v, want InvalidArgument", err)
	}
	e.clock.Add(2 * time.Hour)
	if _, err := workloadapi.ValidateJWTSVID(ctx, svids[0].Marshal(), audience, e.addr()); status.Code(err) != codes.InvalidArgument {
		t.Errorf("expired: %v, want InvalidArgument", err)
	}
}

// TestJWTSVIDSubject: spiffe_id picks one of the caller's identities; the
// grants come with the default one only; others are refused.
func TestJWTSVIDSubject(t *testing.T) {
	e := newEnv(t, uid)
	g := e.grant()
	ctx := testContext(t)
	other := spiffeid.RequireFromPath(td, "/workload/other")
	tests := []struct {
		name    string
		subject spiffeid.ID
		want    []string // hints
		code    codes.Code
	}{
		{"default", workloadID, []string{"", g.ID}, codes.OK},
		{"other", other, []string{""}, codes.OK},
		{"not the caller's", ledgerID, nil, codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svids, err := workloadapi.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: audience, Subject: tc.subject}, e.addr())
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			if len(svids) != len(tc.want) {
				t.Fatalf("got %d tokens, want %d", len(svids), len(tc.want))
			}
			for i, s := range svids {
				if s.ID != tc.subject || s.Hint != tc.want[i] {
					t.Errorf("token %d: %s hint %q", i, s.ID, s.Hint)
				}
			}
		})
	}
	_, err := e.rawClient().FetchJWTSVID(withHeader(ctx), &workload.JWTSVIDRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("no audience: %v, want InvalidArgument", err)
	}
}

// TestJWTBundles: the JWT bundle holds the signer's key.
func TestJWTBundles(t *testing.T) {
	e := newEnv(t, uid)
	set, err := workloadapi.FetchJWTBundles(testContext(t), e.addr())
	if err != nil {
		t.Fatal(err)
	}
	b, ok := set.Get(td)
	if !ok || !b.HasJWTAuthority(e.jwt.KeyID()) || set.Len() != 1 {
		t.Fatalf("bundles: %v", set.Bundles())
	}
}
