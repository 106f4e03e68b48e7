package jitctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// marshalProto encodes an API object for -o json: .proto field names, every
// field present. protojson varies its whitespace on purpose, so callers
// re-encode its output (writeProto) to make it byte-stable.
func marshalProto(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
}

// writeProto writes m as JSON: indented, or compact on one line for JSON
// Lines.
func writeProto(w io.Writer, m proto.Message, compact bool) error {
	b, err := marshalProto(m)
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	var buf bytes.Buffer
	if compact {
		err = json.Compact(&buf, b)
	} else {
		err = json.Indent(&buf, b, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// writeJSON writes v, one of jitctl's own output structs, as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a tabwriter for aligned columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// stateName returns "PENDING" for STATE_PENDING.
func stateName(s pb.State) string { return strings.TrimPrefix(s.String(), "STATE_") }

// fmtTime formats t in UTC to the second, "-" when zero.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtTS formats a protobuf timestamp like fmtTime.
func fmtTS(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return fmtTime(ts.AsTime())
}

// fmtDuration formats d without zero units: "10m", "1h30m", "90s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// fmtScopes renders scopes the way --scope takes them: one
// "method@resource" per resource ("method" alone for any resource),
// separated by spaces.
func fmtScopes(scopes []*pb.Scope) string {
	var parts []string
	for _, s := range scopes {
		if len(s.GetResources()) == 0 {
			parts = append(parts, s.GetMethod())
			continue
		}
		for _, r := range s.GetResources() {
			parts = append(parts, s.GetMethod()+"@"+r)
		}
	}
	return strings.Join(parts, " ")
}

// fmtFactors renders approval factors: "1 approver from [sre] and 1
// approver from [security]"; "nothing" when there are none.
func fmtFactors(fs []*pb.Factor) string {
	if len(fs) == 0 {
		return "nothing"
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = policy.Factor{Count: int(f.GetCount()), Groups: f.GetGroups()}.String()
	}
	return strings.Join(parts, " and ")
}

// fmtUseLimit renders a use limit.
func fmtUseLimit(n uint32) string {
	switch n {
	case 0:
		return "0 (until expiry)"
	case 1:
		return "1 (one-shot)"
	}
	return fmt.Sprint(n)
}

// summary says in a few words where a request stands.
func summary(r *pb.AccessRequest) string {
	id := r.GetId()
	switch r.GetState() {
	case pb.State_STATE_PENDING:
		return fmt.Sprintf("%s is PENDING: waiting for %s", id, fmtFactors(r.GetMissing()))
	case pb.State_STATE_APPROVED:
		if r.GetStartTime() == nil {
			return fmt.Sprintf("%s is APPROVED: the grant starts now; issuing its certificate", id)
		}
		return fmt.Sprintf("%s is APPROVED: the grant starts at %s", id, fmtTS(r.GetStartTime()))
	case pb.State_STATE_ISSUED:
		return fmt.Sprintf("%s is ISSUED: valid until %s%s", id, fmtTS(r.GetNotAfter()), breakGlassNote(r))
	}
	return fmt.Sprintf("%s is %s%s%s", id, stateName(r.GetState()), endedBy(r), breakGlassNote(r))
}

// breakGlassNote says where a break-glass grant's review after the fact
// stands: " (break-glass: needs review by ...)", " (break-glass: reviewed,
// approved)"; "" for other requests.
func breakGlassNote(r *pb.AccessRequest) string {
	switch {
	case r.GetNeedsReview() && len(reviewMissing(r)) > 0:
		return " (break-glass: needs review by " + fmtFactors(reviewMissing(r)) + ")"
	case r.GetNeedsReview():
		return " (break-glass: needs review)"
	case r.GetBreakGlass() && r.GetReviewVerdict() != "":
		return " (break-glass: reviewed, " + r.GetReviewVerdict() + ")"
	}
	return ""
}

// reviewMissing is what a break-glass grant's review still needs: its
// missing factors, or all of them for a grant flagged before the issuer
// tracked them.
func reviewMissing(r *pb.AccessRequest) []*pb.Factor {
	if len(r.GetMissing()) == 0 {
		return r.GetFactors()
	}
	return r.GetMissing()
}

// endedBy says who ended a request and why: " by X: reason".
func endedBy(r *pb.AccessRequest) string {
	var s string
	if r.GetEndedBy() != "" {
		s = " by " + r.GetEndedBy()
	}
	if r.GetEndReason() != "" {
		s += ": " + r.GetEndReason()
	}
	return s
}

// printRequest prints one request in detail, one "field: value" per line.
func printRequest(w io.Writer, r *pb.AccessRequest) error {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("id", r.GetId())
	row("state", stateName(r.GetState()))
	row("requester", r.GetRequester())
	row("scopes", fmtScopes(r.GetScopes()))
	row("ttl", fmtDuration(r.GetTtl().AsDuration()))
	if r.GetReason() != "" {
		row("reason", r.GetReason())
	}
	row("use limit", fmtUseLimit(r.GetUseLimit()))
	row("rule", r.GetRule())
	row("needs", fmtFactors(r.GetFactors()))
	if r.GetState() == pb.State_STATE_PENDING {
		row("missing", fmtFactors(r.GetMissing()))
		row("review deadline", fmtTS(r.GetReviewDeadline()))
	}
	if r.GetBreakGlass() {
		bg := "yes"
		switch {
		case r.GetNeedsReview():
			bg += " (needs review)"
			row("missing", fmtFactors(reviewMissing(r)))
		case r.GetReviewVerdict() != "":
			bg += " (reviewed: " + r.GetReviewVerdict() + ")"
		}
		row("break-glass", bg)
	}
	for _, rv := range r.GetReviews() {
		verb := "approved"
		if !rv.GetApprove() {
			verb = "denied"
		}
		line := fmt.Sprintf("%s %s at %s", rv.GetApprover(), verb, fmtTS(rv.GetTime()))
		if rv.GetComment() != "" {
			line += ": " + rv.GetComment()
		}
		row("review", line)
	}
	row("created", fmtTS(r.GetCreateTime()))
	row("updated", fmtTS(r.GetUpdateTime()))
	if r.GetStartTime() != nil {
		row("start", fmtTS(r.GetStartTime()))
	}
	if r.GetNotAfter() != nil {
		row("not after", fmtTS(r.GetNotAfter()))
	}
	for _, x := range r.GetExtensions() {
		line := fmt.Sprintf("%d: +%s %s, asked %s", x.GetSeq(), fmtDuration(x.GetTtl().AsDuration()), x.GetState(), fmtTS(x.GetCreateTime()))
		if x.GetReason() != "" {
			line += ": " + x.GetReason()
		}
		if x.GetNotAfter() != nil {
			line += "; ends " + fmtTS(x.GetNotAfter())
		}
		for _, rv := range x.GetReviews() {
			verb := "approved"
			if !rv.GetApprove() {
				verb = "denied"
			}
			line += fmt.Sprintf("; %s %s", rv.GetApprover(), verb)
		}
		row("extension", line)
	}
	if r.GetExpiringNotified() != nil {
		row("expiring", "notice sent for the end "+fmtTS(r.GetExpiringNotified()))
	}
	if r.GetSerial() != "" {
		row("serial", r.GetSerial())
	}
	if r.GetHasCsr() {
		row("key", "held by the requester (CSR)")
	}
	if r.GetEndedBy() != "" {
		row("ended by", r.GetEndedBy())
	}
	if r.GetEndReason() != "" {
		row("end reason", r.GetEndReason())
	}
	return tw.Flush()
}

// printRequests prints requests as a table, one per line.
func printRequests(w io.Writer, rs []*pb.AccessRequest) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tTTL\tCREATED\tSCOPES")
	for _, r := range rs {
		state := stateName(r.GetState())
		if r.GetNeedsReview() {
			state += "!"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetId(), state, r.GetRequester(),
			fmtDuration(r.GetTtl().AsDuration()), fmtTS(r.GetCreateTime()), fmtScopes(r.GetScopes()))
	}
	return tw.Flush()
}

// decisionFromProto converts an API decision to policy's, to explain it.
func decisionFromProto(d *pb.Decision) policy.Decision {
	out := policy.Decision{
		Rule: d.GetRule(), Reasons: d.GetReasons(),
		MaxTTL: d.GetMaxTtl().AsDuration(), PendingTimeout: d.GetPendingTimeout().AsDuration(),
	}
	switch d.GetOutcome() {
	case pb.Outcome_OUTCOME_NEEDS_APPROVAL:
		out.Outcome = policy.NeedsApproval
	case pb.Outcome_OUTCOME_AUTO_APPROVED:
		out.Outcome = policy.AutoApproved
	case pb.Outcome_OUTCOME_BREAK_GLASS:
		out.Outcome = policy.BreakGlass
	default:
		out.Outcome = policy.Denied
	}
	for _, f := range d.GetFactors() {
		out.Factors = append(out.Factors, policy.Factor{Count: int(f.GetCount()), Groups: f.GetGroups()})
	}
	return out
}

// describeDecision says in one line what a decision means: "auto-approved
// by rule x", "needs approval from ...", "denied because ...".
func describeDecision(d policy.Decision) string {
	rule := ""
	if d.Rule != "" {
		rule = fmt.Sprintf(" (rule %s)", d.Rule)
	}
	fs := make([]*pb.Factor, len(d.Factors))
	for i, f := range d.Factors {
		fs[i] = &pb.Factor{Count: int32(f.Count), Groups: f.Groups}
	}
	switch d.Outcome {
	case policy.AutoApproved:
		return "auto-approved" + rule
	case policy.NeedsApproval:
		return "needs approval from " + fmtFactors(fs) + rule
	case policy.BreakGlass:
		return "break-glass, reviewed after the fact by " + fmtFactors(fs) + rule
	}
	var why []string
	for _, r := range d.Reasons {
		if strings.HasPrefix(r, "rule ") {
			continue // which rule matched; the rule is named at the end
		}
		why = append(why, strings.TrimPrefix(r, "denied: "))
	}
	if len(why) == 0 {
		why = []string{"no reason given"}
	}
	return "denied because " + strings.Join(why, "; ") + rule
}
