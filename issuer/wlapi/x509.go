package wlapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// minWait is the shortest a stream sleeps before looking at the clock again.
const minWait = time.Millisecond

// grantRetry is how soon a stream tries again after a grant SVID failed to
// mint, or the grants could not be listed.
const grantRetry = 5 * time.Second

// FetchX509SVID implements workload.SpiffeWorkloadAPIServer: the caller's
// identity SVIDs, then its grant SVIDs, pushed again whenever the set
// changes (see the package doc).
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	p, entries, err := s.identify(ctx)
	if err != nil {
		return err
	}
	// Subscribe before reading the grants, so that no change is missed.
	changes, unsubscribe := s.cfg.Issuer.Changes()
	defer func() { unsubscribe() }()
	// Likewise, take the wake channel before every attestation, so that a
	// Refresh after it is seen.
	wake := s.wakeChan()
	var last []*svid
	for {
		set, next, err := s.x509Set(ctx, entries)
		if err != nil {
			return err
		}
		if !slices.Equal(set, last) {
			if err := s.alive(p); err != nil {
				return err
			}
			if err := stream.Send(s.x509Response(set)); err != nil {
				return err
			}
			last = set
		}
		// Wait for something that can change the set.
		timer := time.NewTimer(max(next.Sub(s.cfg.Clock()), minWait))
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-s.done:
				timer.Stop()
				return status.Error(codes.Unavailable, "wlapi: server shutting down")
			case <-timer.C:
				waiting = false
			case <-wake:
				waiting = false
			case r, ok := <-changes:
				if !ok { // dropped for falling behind: subscribe again, reread
					changes, unsubscribe = s.cfg.Issuer.Changes()
					waiting = false
					break
				}
				if r.State.Final() {
					s.cache.drop(grantKey(r.ID))
				}
				if r.Requester == entries[0].ID.String() {
					waiting = false
				}
			}
		}
		timer.Stop()
		wake = s.wakeChan()
		if entries, err = s.attest(ctx, p); err != nil {
			return err
		}
	}
}

// x509Set returns the caller's SVIDs now, identities first, and the time
// at which the set next changes on its own (a rotation or a grant's end).
func (s *Server) x509Set(ctx context.Context, entries []attest.Entry) ([]*svid, time.Time, error) {
	now := s.cfg.Clock()
	s.cache.prune(now)
	set := make([]*svid, 0, len(entries)+4)
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, e := range entries {
		sv, err := s.cache.get(identityKey(e.ID, e.TTL), now, func() (*svid, error) { return s.mintIdentity(e, now) })
		if err != nil {
			s.cfg.Logger.Error("wlapi: minting an identity SVID", "id", e.ID, "err", err)
			return nil, next, status.Error(codes.Internal, "wlapi: could not mint an identity SVID")
		}
		set = append(set, sv)
		soonest(sv.renewAt)
	}
	id := entries[0].ID
	grants, err := s.cfg.Issuer.ActiveGrants(ctx, id)
	if err != nil { // the identities are served all the same
		s.cfg.Logger.Error("wlapi: listing grants; none is sent", "id", id, "err", err)
		soonest(now.Add(grantRetry))
	}
	for _, r := range grants {
		if r.PublicKey != nil {
			continue // requested with a CSR: its key stays with the requester
		}
		if !now.Before(grantEnd(r)) {
			continue // ended by our clock, before the sweeper marked it
		}
		mint := func() (*svid, error) { return s.mintGrant(ctx, id, r) }
		sv, err := s.cache.get(grantKey(r.ID), now, mint)
		if err == nil && !sv.renewAt.Equal(grantEnd(r)) {
			// The grant's end moved (an extension): its SVID is minted
			// again now, for the new end, not at the old one.
			s.cache.drop(grantKey(r.ID))
			sv, err = s.cache.get(grantKey(r.ID), now, mint)
		}
		if errors.Is(err, issuer.ErrState) || errors.Is(err, issuer.ErrNotFound) {
			continue // revoked or ended since the listing: the change feed tells the stream
		}
		if err != nil {
			// One grant that cannot be served leaves the others and the
			// identities served; the stream tries again a little later.
			s.cfg.Logger.Error("wlapi: minting a grant SVID; the grant is left out", "id", id, "grant", r.ID, "err", err)
			soonest(now.Add(grantRetry))
			continue
		}
		if !now.Before(sv.notAfter) {
			continue // the CA's own end came first
		}
		set = append(set, sv)
		soonest(sv.notAfter)
	}
	return set, next, nil
}

// mintIdentity mints the identity SVID of e, due for rotation at about half
// of its life.
func (s *Server) mintIdentity(e attest.Entry, now time.Time) (*svid, error) {
	v, err := s.cfg.CA.Mint(ca.Request{ID: e.ID, TTL: e.TTL})
	if err != nil {
		return nil, err
	}
	chain, key, err := encode(v.Certificates, v.PrivateKey)
	if err != nil {
		return nil, err
	}
	notAfter := v.Certificates[0].NotAfter
	half := notAfter.Sub(now) / 2
	return &svid{id: e.ID, chain: chain, key: key, notAfter: notAfter, renewAt: now.Add(half - s.cfg.Jitter(half))}, nil
}

// mintGrant has the issuer make a new key and certificate for grant r,
// valid until the grant ends.
func (s *Server) mintGrant(ctx context.Context, id spiffeid.ID, r *issuer.Request) (*svid, error) {
	f, err := s.cfg.Issuer.Fetch(ctx, id, r.ID, true)
	if err != nil {
		return nil, err
	}
	if f.Key == nil || len(f.CertChain) == 0 {
		return nil, fmt.Errorf("wlapi: grant %s has no issuer-made key", r.ID)
	}
	leaf, err := x509.ParseCertificate(f.CertChain[0])
	if err != nil {
		return nil, fmt.Errorf("wlapi: grant %s: %w", r.ID, err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(f.Key)
	if err != nil {
		return nil, fmt.Errorf("wlapi: grant %s: encoding the key: %w", r.ID, err)
	}
	return &svid{id: id, hint: r.ID, chain: bytes.Join(f.CertChain, nil), key: key, notAfter: leaf.NotAfter, renewAt: grantEnd(r)}, nil
}

// grantEnd is when a grant's SVID stops being sent: the grant's end in the
// whole seconds a certificate's NotAfter holds (the issuer issues grants
// that end on a whole second; a grant stored before it did may not), so
// that the sub-second tail of a grant does not mint a certificate already
// expired. Its SVID ends then too, so that it is never minted again within
// the grant.
func grantEnd(r *issuer.Request) time.Time { return r.NotAfter.Truncate(time.Second) }

func (s *Server) x509Response(set []*svid) *workload.X509SVIDResponse {
	resp := &workload.X509SVIDResponse{Svids: make([]*workload.X509SVID, len(set))}
	for i, sv := range set {
		resp.Svids[i] = &workload.X509SVID{
			SpiffeId: sv.id.String(), X509Svid: sv.chain, X509SvidKey: sv.key, Bundle: s.bundle, Hint: sv.hint,
		}
	}
	return resp
}

// FetchX509Bundles implements workload.SpiffeWorkloadAPIServer: the X.509
// bundle of the issuer's trust domain, sent once (see the package doc).
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	p, _, err := s.identify(ctx)
	if err != nil {
		return err
	}
	if err := s.alive(p); err != nil {
		return err
	}
	td := s.cfg.CA.TrustDomain().IDString()
	if err := stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{td: s.bundle}}); err != nil {
		return err
	}
	return s.waitDone(ctx)
}
