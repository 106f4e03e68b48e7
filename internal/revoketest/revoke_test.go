package revoketest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/testledger"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func refused(cc *grpc.ClientConn, why string) bool {
	_, err := testledger.Call(cc, testledger.GetBalance, "")
	return status.Code(err) == codes.PermissionDenied && strings.Contains(status.Convert(err).Message(), why)
}

func mustCall(t *testing.T, cc *grpc.ClientConn, id string) {
	t.Helper()
	got, err := testledger.Call(cc, testledger.GetBalance, "")
	if err != nil || got != id {
		t.Fatalf("call with grant %s: %q, %v", id, got, err)
	}
}

func revoke(t *testing.T, e *env, id string) *pb.RevokeGrantResponse {
	t.Helper()
	res, err := e.dialIssuer("person/alice").RevokeGrant(context.Background(), &pb.RevokeGrantRequest{Id: id, Reason: "test", AckTimeout: durationpb.New(10 * time.Second)})
	if err != nil || res.GetRequest().GetState() != pb.State_STATE_REVOKED {
		t.Fatalf("RevokeGrant: %v %v", res.GetRequest().GetState(), err)
	}
	return res
}

func TestRevokeOnOpenConnection(t *testing.T) {
	e := newEnv(t)
	a := e.startReplica(verifier.FailClosed)
	id, cert := e.grant(0)
	other, otherCert := e.grant(0)
	cc, occ := e.dial(a, cert), e.dial(a, otherCert)
	mustCall(t, cc, id)
	res := revoke(t, e, id)
	if res.GetVerifiersFollowing() != 1 || res.GetVerifiersAcknowledged() != 1 {
		t.Errorf("RevokeGrant: %d of %d verifiers acknowledged, want 1 of 1", res.GetVerifiersAcknowledged(), res.GetVerifiersFollowing())
	}
	// The same connection: no reconnect is needed for the refusal.
	e.eventually("the revoked grant is refused", func() bool { return refused(cc, "grant revoked") })
	mustCall(t, occ, other)
}

func TestOneShotAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	a, b := e.startReplica(verifier.FailClosed), e.startReplica(verifier.FailClosed)
	id, cert := e.grant(1)
	mustCall(t, e.dial(a, cert), id)
	api := e.dialIssuer("person/dev")
	e.eventually("the issuer counts the use and revokes the grant", func() bool {
		r, err := api.GetRequest(context.Background(), &pb.GetRequestRequest{Id: id})
		return err == nil && r.GetState() == pb.State_STATE_REVOKED && r.GetUses() == 1
	})
	e.eventually("replica B learns of it", func() bool { return b.feed.Revoked(id) })
	if !refused(e.dial(b, cert), "grant revoked") {
		t.Error("replica B accepted a one-shot grant already used on replica A")
	}
}

func TestRevocationBeforeVerifierStarts(t *testing.T) {
	e := newEnv(t)
	id, cert := e.grant(0)
	revoke(t, e, id)
	a := e.startReplica(verifier.FailClosed) // its first snapshot holds the revocation
	if !a.feed.Revoked(id) {
		t.Fatal("the first snapshot lacks a revocation made before the verifier started")
	}
	if !refused(e.dial(a, cert), "grant revoked") {
		t.Error("a grant revoked before the verifier started was accepted")
	}
}

func TestIssuerAway(t *testing.T) {
	e := newEnv(t)
	closed, keep := e.startReplica(verifier.FailClosed), e.startReplica(verifier.KeepIssuedBefore)
	revokedID, revokedCert := e.grant(0)
	liveID, liveCert := e.grant(0)
	laterID, laterCert := e.grant(0)
	// jitd issued the grants on the real clock; the feeds' contacts from
	// here on come after them (KeepIssuedBefore compares issue times).
	synced := time.Now()
	e.clock.Set(synced)
	revoke(t, e, revokedID)
	for _, r := range []*replica{closed, keep} {
		e.eventually("the revocation arrives", func() bool { return r.feed.Revoked(revokedID) && !r.feed.LastContact().Before(synced) })
	}
	conns := map[*replica][3]*grpc.ClientConn{}
	for _, r := range []*replica{closed, keep} {
		conns[r] = [3]*grpc.ClientConn{e.dial(r, revokedCert), e.dial(r, liveCert), e.dial(r, laterCert)}
	}
	addr := e.addr
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The issuer is away, within StaleAfter: the last known set holds.
	for _, r := range []*replica{closed, keep} {
		c := conns[r]
		if !refused(c[0], "grant revoked") {
			t.Error("a revoked grant was accepted while the issuer is away")
		}
		mustCall(t, c[1], liveID)
	}
	// Past StaleAfter: each mode holds. "later" stands for a grant issued
	// after the last contact: its certificate is newer than the contact.
	e.clock.Add(2 * 60e9)
	if !refused(conns[closed][1], "revocation status unknown") {
		t.Error("fail-closed replica accepted a grant with a stale revocation feed")
	}
	mustCall(t, conns[keep][1], liveID)
	// A grant whose certificate is newer than the last contact is refused
	// by the keep-older replica.
	if !refused(e.dial(keep, e.mintNow()), "revocation status unknown") {
		t.Error("keep-older replica accepted a grant issued after its last contact")
	}
	// The issuer comes back; a revocation made right away reaches both.
	e.start(addr)
	revoke(t, e, liveID)
	for _, r := range []*replica{closed, keep} {
		e.eventually("the replica catches up", func() bool { return r.feed.Revoked(liveID) && !r.feed.RefuseStale(e.clock.Now().Add(-60e9)) })
		if !refused(conns[r][1], "grant revoked") {
			t.Error("a grant revoked while the verifiers were disconnected was accepted after they caught up")
		}
		mustCall(t, conns[r][2], laterID)
	}
}
