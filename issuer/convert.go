package issuer

import (
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversions between the issuer's types and the API's messages.

func scopesFromProto(in []*pb.Scope) []grant.Scope {
	out := make([]grant.Scope, 0, len(in))
	for _, s := range in {
		out = append(out, grant.Scope{Method: s.GetMethod(), Resources: s.GetResources()})
	}
	return out
}

func stateFromProto(s pb.State) (State, bool) {
	name, ok := pb.State_name[int32(s)]
	if !ok || s == pb.State_STATE_UNSPECIFIED {
		return "", false
	}
	return State(name[len("STATE_"):]), true
}

func stateToProto(s State) pb.State {
	return pb.State(pb.State_value["STATE_"+string(s)])
}

func factorsToProto(fs []Factor) []*pb.Factor {
	out := make([]*pb.Factor, 0, len(fs))
	for _, f := range fs {
		out = append(out, &pb.Factor{Count: int32(f.Count), Groups: f.Groups})
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func requestToProto(r *Request) *pb.AccessRequest {
	if r == nil {
		return nil
	}
	out := &pb.AccessRequest{
		Id: r.ID, Requester: r.Requester, State: stateToProto(r.State), Ttl: durationpb.New(r.TTL),
		Reason: r.Reason, UseLimit: r.UseLimit, BreakGlass: r.BreakGlass, NeedsReview: r.NeedsReview,
		Rule: r.Rule, Factors: factorsToProto(r.Factors), Missing: factorsToProto(r.Missing),
		CreateTime: ts(r.CreateTime), UpdateTime: ts(r.UpdateTime), ReviewDeadline: ts(r.ReviewDeadline),
		StartTime: ts(r.StartTime), NotAfter: ts(r.NotAfter), Serial: r.Serial, HasCsr: r.PublicKey != nil,
		EndedBy: r.EndedBy, EndReason: r.EndReason, Uses: r.Uses, ReviewVerdict: r.ReviewVerdict,
		ExpiringNotified: ts(r.ExpiringNotified),
	}
	for _, s := range r.Scopes {
		out.Scopes = append(out.Scopes, &pb.Scope{Method: s.Method, Resources: s.Resources})
	}
	for _, rv := range r.Reviews {
		out.Reviews = append(out.Reviews, &pb.Review{Approver: rv.Approver, Approve: rv.Approve, Comment: rv.Comment, Time: ts(rv.Time)})
	}
	for _, x := range r.Extensions {
		px := &pb.Extension{Seq: int32(x.Seq), Ttl: durationpb.New(x.TTL), Reason: x.Reason, State: x.Shown(r.State), CreateTime: ts(x.CreateTime), NotAfter: ts(x.NotAfter)}
		for _, rv := range x.Reviews {
			px.Reviews = append(px.Reviews, &pb.Review{Approver: rv.Approver, Approve: rv.Approve, Comment: rv.Comment, Time: ts(rv.Time)})
		}
		out.Extensions = append(out.Extensions, px)
	}
	return out
}

func decisionToProto(d policy.Decision) *pb.Decision {
	out := &pb.Decision{
		Outcome: outcomeToProto(d.Outcome), Rule: d.Rule, Reasons: d.Reasons,
		MaxTtl: durationpb.New(d.MaxTTL), PendingTimeout: durationpb.New(d.PendingTimeout),
	}
	for _, f := range d.Factors {
		out.Factors = append(out.Factors, &pb.Factor{Count: int32(f.Count), Groups: f.Groups})
	}
	return out
}

func outcomeToProto(o policy.Outcome) pb.Outcome {
	switch o {
	case policy.Denied:
		return pb.Outcome_OUTCOME_DENIED
	case policy.NeedsApproval:
		return pb.Outcome_OUTCOME_NEEDS_APPROVAL
	case policy.AutoApproved:
		return pb.Outcome_OUTCOME_AUTO_APPROVED
	case policy.BreakGlass:
		return pb.Outcome_OUTCOME_BREAK_GLASS
	}
	return pb.Outcome_OUTCOME_UNSPECIFIED
}
