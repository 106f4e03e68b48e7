package jitctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// t0 is the time of the sample request.
func t0() time.Time { return time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC) }

func sampleRequest() *pb.AccessRequest {
	return &pb.AccessRequest{
		Id: "r01abc", Requester: "spiffe://example.org/person/dev", State: pb.State_STATE_PENDING,
		Scopes: []*pb.Scope{
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/1", "accounts/2"}},
			{Method: "/bank.v1.Ledger/GetBalance"},
		},
		Ttl: durationpb.New(10 * time.Minute), Reason: "INC-42", Rule: "refund",
		Factors:    []*pb.Factor{{Count: 1, Groups: []string{"sre"}}, {Count: 1, Groups: []string{"security"}}},
		Missing:    []*pb.Factor{{Count: 1, Groups: []string{"security"}}},
		Reviews:    []*pb.Review{{Approver: "spiffe://example.org/person/alice", Approve: true, Comment: "ok", Time: timestamppb.New(t0())}},
		CreateTime: timestamppb.New(t0()), UpdateTime: timestamppb.New(t0()), ReviewDeadline: timestamppb.New(t0().Add(time.Hour)),
		HasCsr: true,
	}
}

func TestFormatting(t *testing.T) {
	r := sampleRequest()
	tests := []struct {
		name, got, want string
	}{
		{"scopes", fmtScopes(r.Scopes), "/bank.v1.Ledger/Refund@accounts/1 /bank.v1.Ledger/Refund@accounts/2 /bank.v1.Ledger/GetBalance"},
		{"factors", fmtFactors(r.Factors), "1 approver from [sre] and 1 approver from [security]"},
		{"no factors", fmtFactors(nil), "nothing"},
		{"factor plural", fmtFactors([]*pb.Factor{{Count: 2, Groups: []string{"a", "b"}}}), "2 approvers from [a b]"},
		{"duration", fmtDuration(90 * time.Minute), "1h30m"},
		{"duration minutes", fmtDuration(10 * time.Minute), "10m"},
		{"time", fmtTime(t0().In(time.FixedZone("x", 3600))), "2026-05-06T07:08:09Z"},
		{"zero time", fmtTime(time.Time{}), "-"},
		{"nil timestamp", fmtTS(nil), "-"},
		{"state", stateName(pb.State_STATE_TIMED_OUT), "TIMED_OUT"},
		{"use limit", fmtUseLimit(0) + "|" + fmtUseLimit(1) + "|" + fmtUseLimit(5), "0 (until expiry)|1 (one-shot)|5"},
		{"pending summary", summary(r), "r01abc is PENDING: waiting for 1 approver from [security]"},
		{"denied summary", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_DENIED, EndedBy: "spiffe://x/bob", EndReason: "no"}), "r1 is DENIED by spiffe://x/bob: no"},
		{"issued summary", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_ISSUED, NotAfter: timestamppb.New(t0()), NeedsReview: true}),
			"r1 is ISSUED: valid until 2026-05-06T07:08:09Z (break-glass: needs review)"},
		{"break-glass to review, expired", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_EXPIRED, BreakGlass: true, NeedsReview: true,
			Missing: []*pb.Factor{{Count: 1, Groups: []string{"security"}}}}),
			"r1 is EXPIRED (break-glass: needs review by 1 approver from [security])"},
		{"break-glass reviewed", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_ISSUED, NotAfter: timestamppb.New(t0()), BreakGlass: true, ReviewVerdict: "approved"}),
			"r1 is ISSUED: valid until 2026-05-06T07:08:09Z (break-glass: reviewed, approved)"},
		{"break-glass denied and revoked", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_REVOKED, BreakGlass: true, ReviewVerdict: "denied",
			EndedBy: "spiffe://x/bob", EndReason: "no incident"}),
			"r1 is REVOKED by spiffe://x/bob: no incident (break-glass: reviewed, denied)"},
		{"approved summary, starting now", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_APPROVED}),
			"r1 is APPROVED: the grant starts now; issuing its certificate"},
		{"approved summary, scheduled", summary(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_APPROVED, StartTime: timestamppb.New(t0())}),
			"r1 is APPROVED: the grant starts at 2026-05-06T07:08:09Z"},
		{"ended denied", ended(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_DENIED, EndedBy: "spiffe://x/bob"}), "request r1 was DENIED by spiffe://x/bob"},
		{"ended timed out", ended(&pb.AccessRequest{Id: "r1", State: pb.State_STATE_TIMED_OUT, ReviewDeadline: timestamppb.New(t0())}),
			"request r1 TIMED_OUT: nobody approved it by its review deadline 2026-05-06T07:08:09Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got  %q\nwant %q", tt.got, tt.want)
			}
		})
	}
}

func TestDescribeDecision(t *testing.T) {
	tests := []struct {
		name string
		d    policy.Decision
		want string
	}{
		{"auto", policy.Decision{Outcome: policy.AutoApproved, Rule: "read"}, "auto-approved (rule read)"},
		{"needs", policy.Decision{Outcome: policy.NeedsApproval, Rule: "refund", Factors: []policy.Factor{{Count: 1, Groups: []string{"sre"}}}},
			"needs approval from 1 approver from [sre] (rule refund)"},
		{"break-glass", policy.Decision{Outcome: policy.BreakGlass, Rule: "bg", Factors: []policy.Factor{{Count: 2, Groups: []string{"leads"}}}},
			"break-glass, reviewed after the fact by 2 approvers from [leads] (rule bg)"},
		{"denied by rule", policy.Decision{Outcome: policy.Denied, Rule: "refund", Reasons: []string{`rule "refund" matched: requester matches x`, "denied: reason required"}},
			"denied because reason required (rule refund)"},
		{"denied, no rule", policy.Decision{Outcome: policy.Denied, Reasons: []string{"denied: no rule lists requester spiffe://x/y"}},
			"denied because no rule lists requester spiffe://x/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeDecision(tt.d); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDecisionFromProtoExplains(t *testing.T) {
	d := &pb.Decision{
		Outcome: pb.Outcome_OUTCOME_NEEDS_APPROVAL, Rule: "refund",
		Factors: []*pb.Factor{{Count: 1, Groups: []string{"sre"}}}, Reasons: []string{"needs 1 approver from [sre]"},
		MaxTtl: durationpb.New(15 * time.Minute), PendingTimeout: durationpb.New(time.Hour),
	}
	got := decisionFromProto(d).Explain()
	for _, want := range []string{"outcome: needs_approval", "rule: refund", "needs: 1 approver from [sre]", "max_ttl: 15m", "pending_timeout: 1h", "  - needs 1 approver from [sre]"} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain() = %q, missing %q", got, want)
		}
	}
}

func TestPrintRequest(t *testing.T) {
	var b bytes.Buffer
	if err := printRequest(&b, sampleRequest()); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"id:               r01abc\n",
		"state:            PENDING\n",
		"missing:          1 approver from [security]\n",
		"review:           spiffe://example.org/person/alice approved at 2026-05-06T07:08:09Z: ok\n",
		"key:              held by the requester (CSR)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("printRequest output lacks %q:\n%s", want, got)
		}
	}

	b.Reset()
	r := sampleRequest()
	r.State, r.Extensions = pb.State_STATE_ISSUED, []*pb.Extension{
		{Seq: 1, Ttl: durationpb.New(5 * time.Minute), Reason: "more", State: "APPROVED", CreateTime: timestamppb.New(t0()), NotAfter: timestamppb.New(t0().Add(20 * time.Minute))},
		{Seq: 2, Ttl: durationpb.New(time.Minute), State: "PENDING", CreateTime: timestamppb.New(t0()),
			Reviews: []*pb.Review{{Approver: "spiffe://example.org/person/alice", Approve: true}}},
	}
	if err := printRequest(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  1: +5m APPROVED, asked 2026-05-06T07:08:09Z: more; ends 2026-05-06T07:28:09Z\n",
		"  2: +1m PENDING, asked 2026-05-06T07:08:09Z; spiffe://example.org/person/alice approved\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printRequest output lacks %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	r2 := sampleRequest()
	r2.Id, r2.State, r2.NeedsReview = "r02def", pb.State_STATE_ISSUED, true
	if err := printRequests(&b, []*pb.AccessRequest{sampleRequest(), r2}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "SCOPES") {
		t.Fatalf("printRequests:\n%s", b.String())
	}
	if !strings.HasPrefix(lines[2], "r02def  ISSUED! ") {
		t.Errorf("break-glass row %q: want ISSUED! flagged", lines[2])
	}
}

// TestJSONFieldNames pins the -o json encoding of API objects: proto field
// names, every field present, and the same bytes every time.
func TestJSONFieldNames(t *testing.T) {
	var first string
	for i := range 5 {
		var b bytes.Buffer
		if err := writeProto(&b, sampleRequest(), false); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b.String()
		} else if b.String() != first {
			t.Fatalf("writeProto output varies:\n%s\n%s", first, b.String())
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(first), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "requester", "state", "scopes", "ttl", "reason", "use_limit", "break_glass", "needs_review",
		"rule", "factors", "missing", "reviews", "create_time", "update_time", "review_deadline", "start_time", "not_after",
		"serial", "has_csr", "ended_by", "end_reason"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks field %q: %s", k, first)
		}
	}
	if m["state"] != "STATE_PENDING" || m["ttl"] != "600s" || m["create_time"] != "2026-05-06T07:08:09Z" {
		t.Errorf("state, ttl, create_time = %v, %v, %v", m["state"], m["ttl"], m["create_time"])
	}

	var line bytes.Buffer
	if err := writeProto(&line, &pb.RequestEvent{Request: sampleRequest()}, true); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(line.String(), "\n"); n != 1 || !strings.HasPrefix(line.String(), `{"request":{`) {
		t.Errorf("JSON Lines output %q: want one line", line.String())
	}
}

func TestErrorLine(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"status", status.Error(codes.PermissionDenied, "spiffe://x/dev may not review request r1: self-approval"),
			"jitctl: PermissionDenied: spiffe://x/dev may not review request r1: self-approval"},
		{"wrapped status", fmt.Errorf("fetch r1: %w", status.Error(codes.NotFound, "not found")), "jitctl: NotFound: fetch r1: not found"},
		{"multi-line status", status.Error(codes.InvalidArgument, "a\nb"), "jitctl: InvalidArgument: a; b"},
		{"plain", errors.New("open x: no such file"), "jitctl: open x: no such file"},
		{"code repeated in words", status.Error(codes.FailedPrecondition, "failed precondition: request r1 is DENIED"),
			"jitctl: FailedPrecondition: request r1 is DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorLine(tt.err); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestExitStatus checks the mapping of errors to exit statuses, the one
// place that makes it (the e2e tests run each status against a real jitd).
func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("open x: no such file"), ExitFailure},
		{"usage", cli.Usage(errors.New("--ttl: bad")), ExitUsage},
		{"cobra usage", errors.New(`unknown flag: --nope`), ExitUsage},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), ExitDenied},
		{"unauthenticated", status.Error(codes.Unauthenticated, "who"), ExitDenied},
		{"failed precondition", fmt.Errorf("fetch r1: %w", status.Error(codes.FailedPrecondition, "not ISSUED")), ExitDenied},
		{"invalid argument", status.Error(codes.InvalidArgument, "ttl 20m exceeds rule max_ttl 15m"), ExitDenied},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), ExitTimedOut},
		{"context deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ExitTimedOut},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), ExitUnreachable},
		{"not found", status.Error(codes.NotFound, "no request r1"), ExitNotFound},
		{"internal", status.Error(codes.Internal, "boom"), ExitFailure},
		{"canceled", status.Error(codes.Canceled, "interrupted"), ExitFailure},
		{"marked", withStatus(ExitTimedOut, errors.New("gave up")), ExitTimedOut},
		{"reported", reported(ExitDenied, "dry run: policy would deny this request"), ExitDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitStatus(tt.err); got != tt.want {
				t.Errorf("exitStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestExitStatusDocs: jitctl --help and the README list every exit status
// with the same meaning.
func TestExitStatusDocs(t *testing.T) {
	help, _, code := run(t, "--help")
	if code != 0 || !strings.Contains(help, exitStatusHelp) {
		t.Fatalf("jitctl --help (exit %d) lacks the exit status table:\n%s", code, help)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for status, words := range map[int]string{
		ExitOK: "success", ExitFailure: "any other failure", ExitUsage: "usage error", ExitDenied: "denied or refused",
		ExitTimedOut: "timed out", ExitUnreachable: "issuer unreachable", ExitNotFound: "not found",
	} {
		if row := fmt.Sprintf("| %d | %s", status, words); !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the exit status row %q", row)
		}
		if line := fmt.Sprintf("  %d  %s", status, words); !strings.Contains(exitStatusHelp, line) {
			t.Errorf("jitctl --help lacks %q", line)
		}
	}
}

// TestWatchLinesExpiring: watch shows a grant's expiring notice once per
// end: not on the grant's later changes, nor when the stream resends it, and
// again for a new end.
func TestWatchLinesExpiring(t *testing.T) {
	end := t0().Add(10 * time.Minute)
	grant := func(state pb.State, notified time.Time) *pb.AccessRequest {
		r := sampleRequest()
		r.State, r.NotAfter = state, timestamppb.New(end)
		if !notified.IsZero() {
			r.ExpiringNotified = timestamppb.New(notified)
		}
		return r
	}
	w := newWatchLines()
	const suffix = " expiring, ends 2026-05-06T07:18:09Z"
	const later = " expiring, ends 2026-05-06T07:28:09Z"
	for i, tt := range []struct {
		name string
		r    *pb.AccessRequest
		want string // the line's ending, "" for none of the notice
	}{
		{"issued", grant(pb.State_STATE_ISSUED, time.Time{}), ""},
		{"notice", grant(pb.State_STATE_ISSUED, end), suffix},
		{"a later change", grant(pb.State_STATE_ISSUED, end), ""},
		{"a new end's notice", grant(pb.State_STATE_ISSUED, end.Add(10*time.Minute)), later},
		{"expired", grant(pb.State_STATE_EXPIRED, end.Add(10*time.Minute)), ""},
	} {
		got := w.line(tt.r)
		if !strings.HasPrefix(got, "2026-05-06T07:08:09Z r01abc ") {
			t.Errorf("%d %s: line %q", i, tt.name, got)
		}
		if has := strings.Contains(got, "expiring"); has != (tt.want != "") || (has && !strings.HasSuffix(got, tt.want)) {
			t.Errorf("%d %s: line %q; want the ending %q", i, tt.name, got, tt.want)
		}
	}
}
