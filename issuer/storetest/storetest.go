// Package storetest is the conformance suite of issuer.Store: every
// implementation (the embedded Badger store, a future PostgreSQL store) runs
// the same tests, as golang.org/x/mod/sumdb/storage does for its storage.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) (issuer.Store, storetest.Entries) { return openMyStore(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
)

// Entries reads back the audit entries a store wrote; *audit.Log
// implements it.
type Entries interface {
	// Size returns the number of entries.
	Size() uint64
	// Entry returns the entry with sequence number seq.
	Entry(seq uint64) (audit.Entry, error)
}

// Open returns a new, empty store for one test and the audit log it writes
// to; the test's cleanup closes both.
type Open func(t *testing.T) (issuer.Store, Entries)

// Run runs every conformance test against stores from open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		run  func(*testing.T, issuer.Store, Entries)
	}{
		{"GetUnknown", testGetUnknown},
		{"PutGetRoundTrip", testRoundTrip},
		{"Versions", testVersions},
		{"ListFiltersAndPages", testList},
		{"DueFollowsState", testDue},
		{"NeedsReviewFollowsFlag", testNeedsReview},
		{"RevokedByEnd", testRevoked},
		{"Audit", testAudit},
		{"PutSeveralRecords", testPutRecords},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, log := open(t)
			tt.run(t, s, log)
		})
	}
}

var base = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func rec(action audit.Action, subject string) audit.Record {
	return audit.Record{Actor: "spiffe://example.org/jitd", Action: action, Subject: subject}
}

// request returns a pending request numbered n, created n seconds after
// base, so that IDs sort by n.
func request(n int, requester string) *issuer.Request {
	created := base.Add(time.Duration(n) * time.Second)
	return &issuer.Request{
		ID:        fmt.Sprintf("r%026d", n),
		Requester: requester,
		State:     issuer.StatePending,
		Scopes:    []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}}},
		TTL:       10 * time.Minute, Reason: "INC-1", Rule: "refund",
		Factors:    []issuer.Factor{{Count: 1, Groups: []string{"sre"}}},
		CreateTime: created, UpdateTime: created, ReviewDeadline: created.Add(time.Hour),
		Version: 1,
	}
}

func put(t *testing.T, s issuer.Store, prev, next *issuer.Request) {
	t.Helper()
	if err := s.Put(context.Background(), prev, next, rec(audit.ActionRequestCreated, next.ID)); err != nil {
		t.Fatalf("Put %s v%d: %v", next.ID, next.Version, err)
	}
}

// advance returns a copy of r one version on, in state st.
func advance(r *issuer.Request, st issuer.State) *issuer.Request {
	n := *r
	n.Version++
	n.State = st
	n.UpdateTime = n.UpdateTime.Add(time.Second)
	return &n
}

func testGetUnknown(t *testing.T, s issuer.Store, _ Entries) {
	_, err := s.Get(context.Background(), "r00000000000000000000000000")
	if !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("Get of an unknown ID: %v, want ErrNotFound", err)
	}
}

func testRoundTrip(t *testing.T, s issuer.Store, _ Entries) {
	r := request(1, "spiffe://example.org/person/dev")
	r.Reviews = []issuer.Review{{Approver: "spiffe://example.org/person/alice", Approve: true, Time: base}}
	r.PublicKey = []byte{1, 2, 3}
	put(t, s, nil, r)
	got, err := s.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requester != r.Requester || got.State != r.State || got.Version != 1 || !got.CreateTime.Equal(r.CreateTime) ||
		len(got.Reviews) != 1 || got.Reviews[0].Approver != r.Reviews[0].Approver || string(got.PublicKey) != string(r.PublicKey) ||
		len(got.Scopes) != 1 || got.Scopes[0].Resources[0] != "accounts/*" {
		t.Errorf("Get returned %+v, want %+v", got, r)
	}
}

func testVersions(t *testing.T, s issuer.Store, _ Entries) {
	ctx := context.Background()
	r := request(1, "spiffe://example.org/person/dev")
	put(t, s, nil, r)
	if err := s.Put(ctx, nil, r, rec(audit.ActionRequestCreated, r.ID)); !errors.Is(err, issuer.ErrConflict) {
		t.Errorf("creating an existing request: %v, want ErrConflict", err)
	}
	v2 := advance(r, issuer.StateApproved)
	put(t, s, r, v2)
	stale := advance(r, issuer.StateDenied) // also version 2, but from version 1
	if err := s.Put(ctx, r, stale, rec(audit.ActionRequestDenied, r.ID)); !errors.Is(err, issuer.ErrConflict) {
		t.Errorf("a write from a stale version: %v, want ErrConflict", err)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.State != issuer.StateApproved || got.Version != 2 {
		t.Errorf("after a refused write: %v v%d (%v), want APPROVED v2", got.State, got.Version, err)
	}
	skip := advance(v2, issuer.StateIssued)
	skip.Version++ // 4 after 2
	if err := s.Put(ctx, v2, skip, rec(audit.ActionGrantIssued, r.ID)); err == nil {
		t.Error("a write that skips a version succeeded")
	}
}

func testList(t *testing.T, s issuer.Store, _ Entries) {
	ctx := context.Background()
	dev, ops := "spiffe://example.org/person/dev", "spiffe://example.org/person/ops"
	var all []*issuer.Request
	for i := 1; i <= 7; i++ {
		who := dev
		if i%3 == 0 {
			who = ops
		}
		r := request(i, who)
		put(t, s, nil, r)
		all = append(all, r)
	}
	put(t, s, all[1], advance(all[1], issuer.StateIssued)) // request 2
	put(t, s, all[5], advance(all[5], issuer.StateIssued)) // request 6 (ops)
	ids := func(rs []*issuer.Request) []int {
		var out []int
		for _, r := range rs {
			var n int
			fmt.Sscanf(r.ID, "r%d", &n)
			out = append(out, n)
		}
		return out
	}
	tests := []struct {
		name string
		q    issuer.Query
		want []int
	}{
		{"all, newest first", issuer.Query{Limit: 100}, []int{7, 6, 5, 4, 3, 2, 1}},
		{"one state", issuer.Query{States: []issuer.State{issuer.StateIssued}, Limit: 100}, []int{6, 2}},
		{"two states", issuer.Query{States: []issuer.State{issuer.StateIssued, issuer.StatePending}, Limit: 100}, []int{7, 6, 5, 4, 3, 2, 1}},
		{"requester", issuer.Query{Requester: ops, Limit: 100}, []int{6, 3}},
		{"requester and state", issuer.Query{Requester: dev, States: []issuer.State{issuer.StatePending}, Limit: 100}, []int{7, 5, 4, 1}},
		{"match", issuer.Query{Match: func(r *issuer.Request) bool { return r.Version == 2 }, Limit: 100}, []int{6, 2}},
		{"before", issuer.Query{Before: all[4].ID, Limit: 100}, []int{4, 3, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.List(ctx, tt.q)
			if err != nil || fmt.Sprint(ids(got)) != fmt.Sprint(tt.want) || next != "" {
				t.Errorf("List = %v next %q (%v), want %v", ids(got), next, err, tt.want)
			}
		})
	}
	var paged []int
	q := issuer.Query{Limit: 3}
	for {
		page, next, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(page)...)
		if next == "" {
			break
		}
		q.Before = next
	}
	if fmt.Sprint(paged) != "[7 6 5 4 3 2 1]" {
		t.Errorf("pages of 3: %v", paged)
	}
}

// testNeedsReview: Query.NeedsReview keeps the break-glass grants flagged
// for review, whatever their state, and follows the flag as it clears.
func testNeedsReview(t *testing.T, s issuer.Store, _ Entries) {
	ctx := context.Background()
	dev := "spiffe://example.org/person/dev"
	flagged := func(n int) *issuer.Request {
		r := request(n, dev)
		r.State, r.BreakGlass, r.NeedsReview = issuer.StateIssued, true, true
		return r
	}
	one, two, three := flagged(1), flagged(2), flagged(3)
	for _, r := range []*issuer.Request{one, two, three, request(4, dev)} {
		put(t, s, nil, r)
	}
	cleared := advance(two, issuer.StateIssued)
	cleared.NeedsReview, cleared.ReviewVerdict = false, issuer.VerdictApproved
	put(t, s, two, cleared)
	put(t, s, three, advance(three, issuer.StateExpired)) // still flagged
	list := func(q issuer.Query) string {
		t.Helper()
		var out []string
		for {
			page, next, err := s.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				out = append(out, fmt.Sprintf("%s:%v", r.ID[len(r.ID)-1:], r.NeedsReview))
			}
			if next == "" {
				return fmt.Sprint(out)
			}
			q.Before = next
		}
	}
	for _, tt := range []struct {
		name string
		q    issuer.Query
		want string
	}{
		{"flagged, in pages of one", issuer.Query{NeedsReview: true, Limit: 1}, "[3:true 1:true]"},
		{"flagged and issued", issuer.Query{NeedsReview: true, States: []issuer.State{issuer.StateIssued}, Limit: 10}, "[1:true]"},
		{"flagged of another requester", issuer.Query{NeedsReview: true, Requester: "spiffe://example.org/person/ops", Limit: 10}, "[]"},
		{"every request", issuer.Query{Limit: 10}, "[4:false 3:true 2:false 1:true]"},
	} {
		if got := list(tt.q); got != tt.want {
			t.Errorf("%s: List = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func testDue(t *testing.T, s issuer.Store, _ Entries) {
	ctx := context.Background()
	a, b := request(1, "spiffe://example.org/person/dev"), request(2, "spiffe://example.org/person/dev")
	b.ReviewDeadline = base.Add(10 * time.Minute) // due before a
	put(t, s, nil, a)
	put(t, s, nil, b)
	due := func(at time.Time) string {
		rs, err := s.Due(ctx, at, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID[len(r.ID)-1:]+":"+string(r.State))
		}
		return fmt.Sprint(out)
	}
	if got := due(base); got != "[]" {
		t.Errorf("due before any deadline: %s", got)
	}
	if got := due(base.Add(2 * time.Hour)); got != "[2:PENDING 1:PENDING]" {
		t.Errorf("due, earliest first: %s", got)
	}
	issued := advance(b, issuer.StateIssued)
	issued.NotAfter = base.Add(3 * time.Hour)
	put(t, s, b, issued)
	if got := due(base.Add(2 * time.Hour)); got != "[1:PENDING]" {
		t.Errorf("after issuing 2 (due at its end): %s", got)
	}
	if got := due(base.Add(4 * time.Hour)); got != "[1:PENDING 2:ISSUED]" {
		t.Errorf("at 4h: %s", got)
	}
	put(t, s, a, advance(a, issuer.StateDenied))
	if got := due(base.Add(4 * time.Hour)); got != "[2:ISSUED]" {
		t.Errorf("a final request is never due: %s", got)
	}
}

func testRevoked(t *testing.T, s issuer.Store, _ Entries) {
	ctx := context.Background()
	// Requests 1 to 4 are issued with grants ending at 1h to 4h (in reverse
	// order of creation for 1 and 2); all but 3 are revoked, 2 twice (a use
	// reported after the revocation is a second change in the same state).
	ends := map[int]time.Duration{1: 2 * time.Hour, 2: time.Hour, 3: 3 * time.Hour, 4: 4 * time.Hour}
	for n := 1; n <= 4; n++ {
		r := request(n, "spiffe://example.org/person/dev")
		put(t, s, nil, r)
		issued := advance(r, issuer.StateIssued)
		issued.StartTime, issued.NotAfter = base, base.Add(ends[n])
		put(t, s, r, issued)
		if n == 3 {
			continue
		}
		revoked := advance(issued, issuer.StateRevoked)
		put(t, s, issued, revoked)
		if n == 2 {
			used := advance(revoked, issuer.StateRevoked)
			used.Uses = 1
			put(t, s, revoked, used)
		}
	}
	revoked := func(at time.Time) string {
		rs, err := s.Revoked(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s@%v", r.GrantID[len(r.GrantID)-1:], r.NotAfter.Sub(base)))
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		at   time.Duration
		want string
	}{
		{0, "[2@1h0m0s 1@2h0m0s 4@4h0m0s]"},
		{time.Hour, "[1@2h0m0s 4@4h0m0s]"}, // a grant ending at t has ended
		{time.Hour + time.Nanosecond, "[1@2h0m0s 4@4h0m0s]"},
		{3 * time.Hour, "[4@4h0m0s]"},
		{4 * time.Hour, "[]"},
	}
	for _, tt := range tests {
		if got := revoked(base.Add(tt.at)); got != tt.want {
			t.Errorf("Revoked(base+%v) = %s, want %s", tt.at, got, tt.want)
		}
	}
}

func testAudit(t *testing.T, s issuer.Store, _ Entries) {
	if err := s.Audit(context.Background(), rec(audit.ActionPolicyLoaded, "")); err != nil {
		t.Errorf("Audit: %v", err)
	}
	bad := rec(audit.Action("no.such.action"), "")
	if err := s.Audit(context.Background(), bad); err == nil {
		t.Error("Audit accepted an unknown action")
	}
}

// testPutRecords checks a Put with several records: one transaction that
// stores the request and writes every record as consecutive entries, in
// order, or writes nothing at all.
func testPutRecords(t *testing.T, s issuer.Store, log Entries) {
	ctx := context.Background()
	dev := "spiffe://example.org/person/dev"
	created := request(1, dev)
	created.State = issuer.StateApproved
	issued := advance(created, issuer.StateIssued)
	issued.NotAfter = base.Add(2 * time.Hour)
	both := []audit.Record{rec(audit.ActionRequestCreated, created.ID), rec(audit.ActionGrantIssued, created.ID)}
	bad := rec(audit.Action("no.such.action"), created.ID)
	tests := []struct {
		name       string
		prev, next *issuer.Request
		recs       []audit.Record
		conflict   bool // the error must match ErrConflict
		wantState  issuer.State
		wantAction []audit.Action
	}{
		{"no record", nil, created, nil, false, "", nil},
		{"version not advanced by the record count", nil, created, both, false, "", nil},
		{"an invalid record fails the whole put", nil, issued, []audit.Record{both[0], bad}, false, "", nil},
		{"created and issued at once", nil, issued, both, false, issuer.StateIssued,
			[]audit.Action{audit.ActionRequestCreated, audit.ActionGrantIssued}},
		{"a second creation conflicts", nil, issued, both, true, issuer.StateIssued, nil},
		{"two steps from a stale version conflict", created, advance(issued, issuer.StateRevoked), both, true, issuer.StateIssued, nil},
		{"two steps from the stored version", issued, advance(advance(issued, issuer.StateRevoked), issuer.StateRevoked),
			[]audit.Record{rec(audit.ActionGrantUsed, created.ID), rec(audit.ActionGrantRevoked, created.ID)}, false, issuer.StateRevoked,
			[]audit.Action{audit.ActionGrantUsed, audit.ActionGrantRevoked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := log.Size()
			err := s.Put(ctx, tt.prev, tt.next, tt.recs...)
			switch {
			case tt.wantAction == nil && err == nil:
				t.Fatal("Put succeeded")
			case tt.wantAction != nil && err != nil:
				t.Fatalf("Put: %v", err)
			case tt.conflict && !errors.Is(err, issuer.ErrConflict):
				t.Errorf("Put: %v, want ErrConflict", err)
			}
			var got []audit.Action
			for seq := size; seq < log.Size(); seq++ {
				e, err := log.Entry(seq)
				if err != nil {
					t.Fatal(err)
				}
				if e.Subject != created.ID {
					t.Errorf("entry %d has subject %q, want %s", seq, e.Subject, created.ID)
				}
				got = append(got, e.Action)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantAction) {
				t.Errorf("new entries %v, want %v", got, tt.wantAction)
			}
			r, err := s.Get(ctx, created.ID)
			switch {
			case tt.wantState == "" && !errors.Is(err, issuer.ErrNotFound):
				t.Errorf("Get after a failed put: %v, want ErrNotFound", err)
			case tt.wantState != "" && (err != nil || r.State != tt.wantState || r.Version != tt.next.Version && tt.wantAction != nil):
				t.Errorf("Get: %v (%v), want %s", r, err, tt.wantState)
			}
			if got, want := indexed(t, s), map[issuer.State]string{issuer.StateIssued: "[1]", issuer.StateRevoked: "[]"}[tt.wantState]; want != "" && got != want {
				t.Errorf("ISSUED and due at the grant's end: %s, want %s", got, want)
			}
		})
	}
}

// indexed returns the numbers of the requests that List finds ISSUED and
// that are also due at base+2h.
func indexed(t *testing.T, s issuer.Store) string {
	t.Helper()
	ctx := context.Background()
	list, _, err := s.List(ctx, issuer.Query{States: []issuer.State{issuer.StateIssued}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	due, err := s.Due(ctx, base.Add(2*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, r := range list {
		for _, d := range due {
			if d.ID == r.ID {
				var n int
				fmt.Sscanf(r.ID, "r%d", &n)
				out = append(out, n)
			}
		}
	}
	return fmt.Sprint(out)
}
