package issuer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// follower follows the revocation feed in a goroutine: each batch arrives
// on batches; after the snapshot, each send waits for gate to be closed
// (nil gate: no wait) and then for ack, when set.
type follower struct {
	batches chan []issuer.Revocation
	done    chan struct{} // closed when the feed ends, with err set
	err     error
}

func (e *env) follow(who spiffeid.ID, stream string, gate chan struct{}, ack func([]issuer.Revocation)) *follower {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{batches: make(chan []issuer.Revocation, 1024), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = e.is.WatchRevocations(ctx, who, stream, nil, func(snapshot bool, rs []issuer.Revocation) error {
			if !snapshot && gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if !snapshot && ack != nil {
				ack(rs)
			}
			f.batches <- rs
			return nil
		})
	}()
	e.t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// next returns the follower's next batch.
func (f *follower) next(t *testing.T) []issuer.Revocation {
	t.Helper()
	select {
	case rs := <-f.batches:
		return rs
	case <-f.done:
		t.Fatalf("the feed ended: %v", f.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no batch from the revocation feed")
	}
	return nil
}

func grantIDs(rs []issuer.Revocation) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GrantID)
	}
	slices.Sort(out)
	return out
}

// TestRevocationFeedRefusals: following revocations, reporting uses and
// acknowledging revocations need the watch_revocations permission, which is
// checked before the arguments; a refused use report leaves the grant's
// count alone and writes nothing.
func TestRevocationFeedRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.create(dev, read(t, dev, time.Minute, false))
	tests := []struct {
		name string
		call func(who spiffeid.ID) error
		bad  bool // the arguments are bad too
	}{
		{"watch", func(who spiffeid.ID) error {
			return e.is.WatchRevocations(ctx, who, "s", nil, func(bool, []issuer.Revocation) error { return errors.New("sent") })
		}, false},
		{"watch with a stream ID too long", func(who spiffeid.ID) error {
			return e.is.WatchRevocations(ctx, who, strings.Repeat("s", 65), nil, func(bool, []issuer.Revocation) error { return nil })
		}, true},
		{"report a use", func(who spiffeid.ID) error { _, err := e.is.ReportUse(ctx, who, g.ID, 1); return err }, false},
		{"report no use", func(who spiffeid.ID) error { _, err := e.is.ReportUse(ctx, who, g.ID, 0); return err }, true},
		{"report a use of a malformed ID", func(who spiffeid.ID) error { _, err := e.is.ReportUse(ctx, who, "x", 1); return err }, true},
		{"acknowledge", func(who spiffeid.ID) error { return e.is.AckRevocations(who, "s", []string{g.ID}) }, false},
		{"acknowledge without a stream ID", func(who spiffeid.ID) error { return e.is.AckRevocations(who, "", nil) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, uses := len(e.entriesOf(g.ID)), e.get(g.ID).Uses
			for _, who := range []spiffeid.ID{mallory, dev, bob} {
				err := tt.call(who)
				if !isErr(err, issuer.ErrPermission) || !strings.Contains(err.Error(), string(policy.WatchRevocations)) {
					t.Errorf("%s: %v, want ErrPermission naming %s", who, err, policy.WatchRevocations)
				}
			}
			if got := e.get(g.ID); got.Uses != uses || got.State != issuer.StateIssued {
				t.Errorf("after refused calls the grant is %s with %d uses, want ISSUED with %d", got.State, got.Uses, uses)
			}
			if got := len(e.entriesOf(g.ID)); got != n {
				t.Errorf("refused calls wrote %d audit entries", got-n)
			}
			// The holder of the permission gets past it, to the arguments.
			if err := tt.call(ledger); tt.bad != isErr(err, issuer.ErrInvalid) || isErr(err, issuer.ErrPermission) {
				t.Errorf("%s: %v; want ErrInvalid: %v", ledger, err, tt.bad)
			}
		})
	}
}

// TestRevocationFollowerFallsBehind: a follower that stops reading is
// dropped once its buffer is full, and its next snapshot holds every
// revocation it missed.
func TestRevocationFollowerFallsBehind(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gate := make(chan struct{})
	f := e.follow(ledger, "slow", gate, nil)
	if rs := f.next(t); len(rs) != 0 {
		t.Fatalf("first snapshot holds %d revocations", len(rs))
	}
	var revoked []string
	for range 300 { // more than a follower's buffer (256)
		r := e.create(dev, read(t, dev, time.Minute, false))
		if _, err := e.is.Revoke(ctx, dev, r.ID, "", 0); err != nil {
			t.Fatal(err)
		}
		revoked = append(revoked, r.ID)
	}
	slices.Sort(revoked)
	close(gate) // the follower reads again: what was buffered, then its end
	for ended := false; !ended; {
		select {
		case <-f.batches:
		case <-f.done:
			ended = true
		case <-time.After(10 * time.Second):
			t.Fatal("the slow follower was not dropped")
		}
	}
	if err := f.err; !isErr(err, issuer.ErrState) || !strings.Contains(err.Error(), "fell behind") {
		t.Fatalf("slow follower ended with %v, want ErrState: fell behind", err)
	}
	again := e.follow(ledger, "slow", nil, nil)
	if got := grantIDs(again.next(t)); !slices.Equal(got, revoked) {
		t.Errorf("the snapshot after reconnecting holds %d revocations, want the %d made", len(got), len(revoked))
	}
}

// TestRevokeAcknowledgements: Revoke reports the verifiers following
// revocations and those that acknowledged within the wait; a follower that
// never acknowledges is counted as following only.
func TestRevokeAcknowledgements(t *testing.T) {
	tests := []struct {
		name     string
		acks     bool
		wait     time.Duration
		wantAcks int
	}{
		{name: "acknowledgement times out", wait: time.Millisecond},
		{name: "acknowledged", acks: true, wait: issuer.MaxAckWait, wantAcks: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var ack func([]issuer.Revocation)
			if tt.acks {
				ack = func(rs []issuer.Revocation) {
					if err := e.is.AckRevocations(ledger, "v1", grantIDs(rs)); err != nil {
						t.Errorf("AckRevocations: %v", err)
					}
				}
			}
			f := e.follow(ledger, "v1", nil, ack)
			f.next(t) // the snapshot: the follower is counted from now
			r := e.create(dev, read(t, dev, time.Minute, false))
			res, err := e.is.Revoke(context.Background(), bob, r.ID, "done", tt.wait)
			if err != nil {
				t.Fatal(err)
			}
			if res.Following != 1 || res.Acknowledged != tt.wantAcks || res.Request.State != issuer.StateRevoked {
				t.Errorf("Revoke: %s, %d following, %d acknowledged; want REVOKED, 1, %d", res.Request.State, res.Following, res.Acknowledged, tt.wantAcks)
			}
			if got := grantIDs(f.next(t)); !slices.Equal(got, []string{r.ID}) {
				t.Errorf("the follower got %v, want %s", got, r.ID)
			}
		})
	}
}

// TestNoPolicyLoaded: with no policy loaded every decision fails closed,
// saying why.
func TestNoPolicyLoaded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.create(dev, refund(t, dev))
	is, err := issuer.New(issuer.Config{CA: e.ca, Store: e.store, Policies: policy.NewStore(nil), ID: jitdID, Clock: e.clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	tests := []struct {
		name string
		call func() error
	}{
		{"create", func() error { _, _, err := is.Create(ctx, dev, refund(t, dev)); return err }},
		{"get", func() error { _, err := is.Get(ctx, dev, r.ID); return err }},
		{"list", func() error { _, _, err := is.List(ctx, dev, issuer.ListInput{}); return err }},
		{"watch", func() error {
			return is.Watch(ctx, dev, issuer.ListInput{}, func(*issuer.Request) error { return nil })
		}},
		{"review", func() error { _, err := is.Review(ctx, alice, r.ID, true, ""); return err }},
		{"revoke", func() error { _, err := is.Revoke(ctx, dev, r.ID, "", 0); return err }},
		{"watch revocations", func() error {
			return is.WatchRevocations(ctx, ledger, "s", nil, func(bool, []issuer.Revocation) error { return nil })
		}},
		{"report use", func() error { _, err := is.ReportUse(ctx, ledger, r.ID, 1); return err }},
		{"acknowledge", func() error { return is.AckRevocations(ledger, "s", nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !isErr(err, issuer.ErrState) || !strings.Contains(err.Error(), "no policy is loaded") {
				t.Errorf("%v, want ErrState: no policy is loaded", err)
			}
		})
	}
	if got := e.get(r.ID); got.State != issuer.StatePending || len(got.Reviews) != 0 {
		t.Errorf("the request changed: %s with %d reviews", got.State, len(got.Reviews))
	}
}

// stream is a server stream with a context and nothing else: enough for a
// call refused before it sends.
type stream[T any] struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stream[T]) Context() context.Context { return s.ctx }
func (s stream[T]) Send(*T) error            { return errors.New("sent") }

// TestServiceUnauthenticated: a call without a verified SVID (the verifier's
// credentials did not run) is refused with Unauthenticated by every method.
func TestServiceUnauthenticated(t *testing.T) {
	e := newEnv(t)
	s := issuer.NewService(e.is, e.log)
	ctx := context.Background()
	id := e.create(dev, refund(t, dev)).ID
	calls := map[string]func() error{
		"CreateRequest":  func() error { _, err := s.CreateRequest(ctx, &pb.CreateRequestRequest{}); return err },
		"GetRequest":     func() error { _, err := s.GetRequest(ctx, &pb.GetRequestRequest{Id: id}); return err },
		"ListRequests":   func() error { _, err := s.ListRequests(ctx, &pb.ListRequestsRequest{}); return err },
		"ApproveRequest": func() error { _, err := s.ApproveRequest(ctx, &pb.ReviewRequest{Id: id}); return err },
		"DenyRequest":    func() error { _, err := s.DenyRequest(ctx, &pb.ReviewRequest{Id: id}); return err },
		"CancelRequest":  func() error { _, err := s.CancelRequest(ctx, &pb.CancelRequestRequest{Id: id}); return err },
		"RevokeGrant":    func() error { _, err := s.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: id}); return err },
		"AckRevocations": func() error { _, err := s.AckRevocations(ctx, &pb.AckRevocationsRequest{StreamId: "s"}); return err },
		"FetchGrant":     func() error { _, err := s.FetchGrant(ctx, &pb.FetchGrantRequest{Id: id}); return err },
		"ExtendGrant":    func() error { _, err := s.ExtendGrant(ctx, &pb.ExtendGrantRequest{Id: id}); return err },
		"ReportUse":      func() error { _, err := s.ReportUse(ctx, &pb.ReportUseRequest{GrantId: id, Uses: 1}); return err },
		"WatchRequests":  func() error { return s.WatchRequests(&pb.WatchRequestsRequest{}, stream[pb.RequestEvent]{ctx: ctx}) },
		"ExportAudit":    func() error { return s.ExportAudit(&pb.ExportAuditRequest{}, stream[pb.ExportAuditChunk]{ctx: ctx}) },
		"WatchRevocations": func() error {
			return s.WatchRevocations(&pb.WatchRevocationsRequest{}, stream[pb.RevocationEvent]{ctx: ctx})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%v, want Unauthenticated", err)
			}
		})
	}
	if got := e.get(id); got.State != issuer.StatePending {
		t.Errorf("the request is %s, want PENDING", got.State)
	}
}

// TestPermissionBeforeArguments: reviewing and revoking check the caller's
// permission before the other arguments, so that a caller without it
// learns nothing from them; a caller with it gets the argument's error.
func TestPermissionBeforeArguments(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pending := e.create(dev, refund(t, dev))
	issued := e.create(dev, read(t, dev, time.Minute, false))
	long := strings.Repeat("x", issuer.MaxCommentLength+1)
	tests := []struct {
		name    string
		call    func(who spiffeid.ID) error
		allowed spiffeid.ID
		field   string
	}{
		{"review with a long comment", func(who spiffeid.ID) error { _, err := e.is.Review(ctx, who, pending.ID, true, long); return err }, alice, "comment"},
		{"revoke with a long reason", func(who spiffeid.ID) error { _, err := e.is.Revoke(ctx, who, issued.ID, long, 0); return err }, bob, "reason"},
		{"revoke with a bad wait", func(who spiffeid.ID) error { _, err := e.is.Revoke(ctx, who, issued.ID, "", -1); return err }, bob, "ack_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(mallory); !isErr(err, issuer.ErrPermission) {
				t.Errorf("mallory: %v, want ErrPermission", err)
			}
			if err := tt.call(tt.allowed); !isErr(err, issuer.ErrInvalid) || !strings.Contains(err.Error(), tt.field+": ") {
				t.Errorf("%s: %v, want ErrInvalid naming %s", tt.allowed, err, tt.field)
			}
		})
	}
	if p, i := e.get(pending.ID), e.get(issued.ID); p.State != issuer.StatePending || len(p.Reviews) != 0 || i.State != issuer.StateIssued {
		t.Errorf("refused calls changed the requests: %s with %d reviews, %s", p.State, len(p.Reviews), i.State)
	}
}
