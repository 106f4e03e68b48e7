package issuer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestCreateRejects(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		who     spiffeid.ID
		mutate  func(*issuer.CreateInput)
		wantErr error
		wantMsg string
	}{
		{"no scopes", dev, func(in *issuer.CreateInput) { in.Scopes = nil }, issuer.ErrInvalid, "scopes: at least one"},
		{"malformed method", dev, func(in *issuer.CreateInput) { in.Scopes[0].Method = "Refund" }, issuer.ErrInvalid, "scopes[0]: method \"Refund\""},
		{"bad resource", dev, func(in *issuer.CreateInput) { in.Scopes[0].Resources = []string{"a//b"} }, issuer.ErrInvalid, "scopes[0]: resource 0"},
		{"dot-dot resource", dev, func(in *issuer.CreateInput) { in.Scopes[0].Resources = []string{"accounts/.."} }, issuer.ErrInvalid, `has a ".." segment`},
		{"dot resource", dev, func(in *issuer.CreateInput) { in.Scopes[0].Resources = []string{"./accounts"} }, issuer.ErrInvalid, `has a "." segment`},
		{"too many scopes", dev, func(in *issuer.CreateInput) {
			in.Scopes = nil
			for i := range grant.MaxScopes + 1 {
				in.Scopes = append(in.Scopes, grant.Scope{Method: fmt.Sprintf("/a.B/M%d", i)})
			}
		}, issuer.ErrInvalid, "scopes: 65 scopes"},
		{"zero ttl", dev, func(in *issuer.CreateInput) { in.TTL = 0 }, issuer.ErrInvalid, "ttl: 0s is not positive"},
		{"negative ttl", dev, func(in *issuer.CreateInput) { in.TTL = -time.Minute }, issuer.ErrInvalid, "ttl: -1m0s"},
		{"ttl over the rule's max", dev, func(in *issuer.CreateInput) { in.TTL = 20 * time.Minute }, issuer.ErrInvalid, "max_ttl"},
		{"missing reason", dev, func(in *issuer.CreateInput) { in.Reason = "" }, issuer.ErrInvalid, "reason"},
		{"reason not matching", dev, func(in *issuer.CreateInput) { in.Reason = "because" }, issuer.ErrInvalid, "reason"},
		{"reason with control bytes", dev, func(in *issuer.CreateInput) { in.Reason = "INC-1\x00" }, issuer.ErrInvalid, "reason: not printable"},
		{"reason too long", dev, func(in *issuer.CreateInput) { in.Reason = "INC-1 " + strings.Repeat("x", 2000) }, issuer.ErrInvalid, "reason: 2006 bytes"},
		{"use limit too high", dev, func(in *issuer.CreateInput) { in.UseLimit = issuer.MaxUseLimit + 1 }, issuer.ErrInvalid, "use_limit"},
		{"CSR of someone else", dev, func(in *issuer.CreateInput) { in.CSR = csrFor(t, alice) }, issuer.ErrInvalid, "csr: its URI SAN must be the caller's"},
		{"CSR garbage", dev, func(in *issuer.CreateInput) { in.CSR = []byte("not a csr") }, issuer.ErrInvalid, "csr:"},
		{"CSR with a weak key", dev, func(in *issuer.CreateInput) { in.CSR = rsaCSR(t, 1024) }, issuer.ErrInvalid, "csr: public key: RSA key of 1024 bits"},
		{"start in the past", dev, func(in *issuer.CreateInput) { in.Start = e.clock.Now().Add(-time.Hour) }, issuer.ErrInvalid, "start_time"},
		{"start too far ahead", dev, func(in *issuer.CreateInput) { in.Start = e.clock.Now().Add(30 * 24 * time.Hour) }, issuer.ErrInvalid, "start_time: more than"},
		{"break-glass scheduled", dev, func(in *issuer.CreateInput) { in.BreakGlass, in.Start = true, e.clock.Now().Add(time.Hour) }, issuer.ErrInvalid, "start_time: a break-glass"},
		{"no rule for the method", dev, func(in *issuer.CreateInput) { in.Scopes = []grant.Scope{{Method: "/bank.v1.Ledger/Transfer"}} }, issuer.ErrPermission, "no policy rule allows"},
		{"no rule for the requester", spiffeid.RequireFromString("spiffe://example.org/robot/x"), func(in *issuer.CreateInput) {
			in.CSR = csrFor(t, spiffeid.RequireFromString("spiffe://example.org/robot/x"))
		}, issuer.ErrPermission, "no policy rule allows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := e.log.Size()
			in := refund(t, dev)
			tt.mutate(&in)
			r, _, err := e.is.Create(context.Background(), tt.who, in)
			if !isErr(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if r != nil {
				t.Errorf("a request was returned: %v", r)
			}
			// Nothing is stored; a policy refusal is audited, bad input is not.
			list, _, _ := e.is.List(context.Background(), tt.who, issuer.ListInput{})
			if len(list) != 0 {
				t.Errorf("stored %d requests", len(list))
			}
			if grew := e.log.Size() - size; grew > 1 {
				t.Errorf("audit log grew by %d", grew)
			}
		})
	}
}

// FuzzCreateInput checks that request validation never panics and that what
// it accepts is well-formed.
func FuzzCreateInput(f *testing.F) {
	f.Add("/bank.v1.Ledger/Refund", "accounts/*", int64(time.Minute), "INC-1", uint32(0), []byte(nil))
	f.Add("/a.B/*", "", int64(-1), "\x00", uint32(9), []byte("0\x82"))
	f.Add("", "a//b", int64(0), "", uint32(1<<31), []byte{})
	f.Fuzz(func(t *testing.T, method, resource string, ttl int64, reason string, limit uint32, csr []byte) {
		in := issuer.CreateInput{Scopes: []grant.Scope{{Method: method}}, TTL: time.Duration(ttl), Reason: reason, UseLimit: limit, CSR: csr}
		if resource != "" {
			in.Scopes[0].Resources = []string{resource}
		}
		if err := in.Validate(); err != nil {
			if !isErr(err, issuer.ErrInvalid) {
				t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if grant.ValidateMethod(method) != nil || in.TTL <= 0 || len(reason) > issuer.MaxReasonLength || limit > issuer.MaxUseLimit {
			t.Fatalf("Validate accepted %+v", in)
		}
	})
}

func TestListVisibilityAndPaging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var ids []string
	for range 5 {
		ids = append(ids, e.create(dev, refund(t, dev)).ID)
		e.clock.Add(time.Millisecond)
	}
	other := e.create(mallory, refund(t, mallory)).ID
	tests := []struct {
		name string
		who  spiffeid.ID
		in   issuer.ListInput
		want int
	}{
		{"requester sees own", dev, issuer.ListInput{}, 5},
		{"outsider sees only own", mallory, issuer.ListInput{}, 1},
		{"approver sees reviewable", alice, issuer.ListInput{}, 6},
		{"awaiting my review", alice, issuer.ListInput{AwaitingMyReview: true}, 6},
		{"list_all with requester filter", bob, issuer.ListInput{Requester: mallory.String()}, 1},
		{"state filter", dev, issuer.ListInput{States: []issuer.State{issuer.StateIssued}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := e.is.List(ctx, tt.who, tt.in)
			if err != nil || len(got) != tt.want {
				t.Errorf("List: %d requests (%v), want %d", len(got), err, tt.want)
			}
		})
	}
	// Pages of two, newest first, cover every request once.
	var seen []string
	token := ""
	for {
		page, next, err := e.is.List(ctx, dev, issuer.ListInput{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seen = append(seen, r.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(seen) != 5 || seen[0] != ids[4] || seen[4] != ids[0] {
		t.Errorf("paged list %v, want %v newest first", seen, ids)
	}
	if _, err := e.is.Get(ctx, mallory, ids[0]); !isErr(err, issuer.ErrPermission) {
		t.Errorf("outsider Get: %v, want ErrPermission", err)
	}
	if _, err := e.is.Get(ctx, dev, other); !isErr(err, issuer.ErrPermission) {
		t.Errorf("Get of another's request: %v, want ErrPermission", err)
	}
	if _, err := e.is.Get(ctx, dev, "r0000000000000000000000000"); !isErr(err, issuer.ErrNotFound) {
		t.Errorf("Get of an unknown ID: %v, want ErrNotFound", err)
	}
	// Alice reviews one: it no longer awaits her.
	e.review(alice, ids[0], true)
	got, _, _ := e.is.List(ctx, alice, issuer.ListInput{AwaitingMyReview: true})
	if len(got) != 5 {
		t.Errorf("awaiting alice after her review: %d, want 5", len(got))
	}
}

func TestStoreVersions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.create(dev, refund(t, dev))
	stale := e.get(r.ID)
	if _, err := e.review(alice, r.ID, true); err != nil {
		t.Fatal(err)
	}
	next := *stale
	next.Version++
	next.State = issuer.StateDenied
	size := e.log.Size()
	err := e.store.Put(ctx, stale, &next, refundRecord())
	if !isErr(err, issuer.ErrConflict) {
		t.Fatalf("stale write: %v, want ErrConflict", err)
	}
	if e.log.Size() != size {
		t.Error("a refused write left an audit entry")
	}
	if s := e.get(r.ID).State; s != issuer.StatePending {
		t.Errorf("state after refused write %s", s)
	}
}
