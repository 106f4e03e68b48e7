package wlapi

import (
	"context"
	"slices"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// FetchJWTSVID implements workload.SpiffeWorkloadAPIServer: an identity
// token per matching entry, or for the requested spiffe_id only, then, for
// the default SPIFFE ID, one token per active grant with hint = grant ID.
func (s *Server) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	p, entries, err := s.identify(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	grants := true
	if req.SpiffeId != "" {
		want, err := spiffeid.FromString(req.SpiffeId)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "wlapi: spiffe_id: %v", err)
		}
		i := slices.IndexFunc(entries, func(e attest.Entry) bool { return e.ID == want })
		if i < 0 {
			return nil, status.Errorf(codes.PermissionDenied, "wlapi: the caller is not entitled to %s", want)
		}
		// Match never repeats an ID; grants belong to the default ID only.
		grants = i == 0
		entries = entries[i : i+1]
	}
	return s.jwtResponse(ctx, p, entries, grants, req.Audience)
}

// jwtResponse mints the tokens of entries and, with grants, those of the
// first entry's active grants.
func (s *Server) jwtResponse(ctx context.Context, p attest.PeerInfo, entries []attest.Entry, grants bool, aud []string) (*workload.JWTSVIDResponse, error) {
	resp := &workload.JWTSVIDResponse{}
	for _, e := range entries {
		tok, _, err := s.cfg.JWT.Mint(jwtsvid.Request{ID: e.ID, Audience: aud, TTL: e.TTL})
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "wlapi: %v", err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.ID.String(), Svid: tok})
	}
	if grants {
		id := entries[0].ID
		rs, err := s.cfg.Issuer.ActiveGrants(ctx, id)
		if err != nil {
			s.cfg.Logger.Error("wlapi: listing grants", "id", id, "err", err)
			return nil, status.Error(codes.Unavailable, "wlapi: could not read grants")
		}
		now := s.cfg.Clock()
		for _, r := range rs {
			ttl := r.NotAfter.Sub(now)
			if ttl < 2*time.Second { // ending: a token needs at least a second
				continue
			}
			g := &grant.Grant{ID: r.ID, Scopes: r.Scopes, UseLimit: r.UseLimit}
			tok, _, err := s.cfg.JWT.Mint(jwtsvid.Request{ID: id, Audience: aud, TTL: ttl, NotAfter: r.NotAfter, Grant: g})
			if err != nil { // left out: one grant never fails the response
				s.cfg.Logger.Error("wlapi: minting a grant token; the grant is left out", "grant", r.ID, "err", err)
				continue
			}
			resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id.String(), Svid: tok, Hint: r.ID})
		}
	}
	if err := s.alive(p); err != nil {
		return nil, err
	}
	return resp, nil
}

// FetchJWTBundles implements workload.SpiffeWorkloadAPIServer: the JWT
// bundle of the issuer's trust domain as a JWK Set, sent once (see the
// package doc).
func (s *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	p, _, err := s.identify(ctx)
	if err != nil {
		return err
	}
	if err := s.alive(p); err != nil {
		return err
	}
	td := s.cfg.JWT.TrustDomain().IDString()
	if err := stream.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{td: s.jwks}}); err != nil {
		return err
	}
	return s.waitDone(ctx)
}

// ValidateJWTSVID implements workload.SpiffeWorkloadAPIServer: it checks
// the token against the issuer's JWT bundle for the audience, at the
// server's clock.
func (s *Server) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if _, _, err := s.identify(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.Audience == "":
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	case req.Svid == "":
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	claims, err := jwtsvid.Validate(req.Svid, req.Audience, s.jwtb, jwtsvid.WithTime(s.cfg.Clock()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "wlapi: %v", err)
	}
	st, err := structpb.NewStruct(claims.Raw)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "wlapi: claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: claims.ID.String(), Claims: st}, nil
}
