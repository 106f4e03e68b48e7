package issuer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Exporter writes the audit log as JSON Lines; *audit.Log implements it.
type Exporter interface {
	Export(ctx context.Context, w io.Writer, from, to uint64) error
	// Size returns the number of entries.
	Size() uint64
}

// Service serves the jitgrant.v1.Issuer API over an Issuer. Callers are
// authenticated by the verifier's mTLS credentials, which the server must
// use ([Service.ServerOptions]); every method reads the caller's SPIFFE ID
// from the verified peer.
type Service struct {
	pb.UnimplementedIssuerServer
	is    *Issuer
	audit Exporter
	log   *slog.Logger
	// Heartbeat is the longest WatchRevocations stays silent. Default 5s.
	Heartbeat time.Duration
}

// NewService returns the API service of is; audit serves ExportAudit.
func NewService(is *Issuer, audit Exporter) *Service {
	return &Service{is: is, audit: audit, log: is.cfg.Logger, Heartbeat: 5 * time.Second}
}

// PublicMethods returns the issuer API's methods for verifier.Config: they
// need a verified SVID but no grant.
func PublicMethods() []string {
	return append([]string{"/jitgrant.v1.Issuer/*"}, verifier.DefaultPublicMethods()...)
}

// IdentityMethods returns the methods jitd serves, for
// verifier.Config.IdentityMethods: each accepts identity SVIDs only, and
// refuses a grant certificate.
func IdentityMethods() []string { return PublicMethods() }

// caller returns the caller's identity. A grant certificate is not one: it
// never creates, approves, lists or revokes anything as its holder.
func caller(ctx context.Context) (spiffeid.ID, error) {
	if _, ok := verifier.GrantFromContext(ctx); ok {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, verifier.MsgGrantNotIdentity)
	}
	id, ok := verifier.IdentityFromContext(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "jitgrant: an X.509-SVID is required")
	}
	return id, nil
}

// toStatus maps the issuer's errors to gRPC status codes. The text of an
// expected error goes to the client; an unexpected one is logged and the
// client learns only that it was internal.
func (s *Service) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ErrState):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrConflict):
		code = codes.Aborted
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, audit.ErrRefused):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	id, _ := verifier.PeerIDFromContext(ctx)
	level := slog.LevelInfo
	msg := err.Error()
	for _, sentinel := range []error{ErrNotFound, ErrInvalid, ErrPermission, ErrState, ErrConflict, ErrUnavailable} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	var refused *audit.RefusedError
	switch {
	case code == codes.Internal:
		level, msg = slog.LevelError, "internal error; see the issuer's log"
	case errors.As(err, &refused):
		// The store refused the write (the disk is nearly full): its text
		// says what is short and that writes resume by themselves.
		level, msg = slog.LevelWarn, refused.Error()
	}
	s.log.Log(ctx, level, "issuer: call failed", "method", method, "caller", id.String(), "code", code.String(), "error", err.Error())
	return status.Error(code, msg)
}

// CreateRequest implements pb.IssuerServer.
func (s *Service) CreateRequest(ctx context.Context, in *pb.CreateRequestRequest) (*pb.CreateRequestResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ci := CreateInput{
		Scopes: scopesFromProto(in.GetScopes()), TTL: in.GetTtl().AsDuration(), Reason: in.GetReason(),
		CSR: in.GetCsr(), DryRun: in.GetDryRun(), BreakGlass: in.GetBreakGlass(), UseLimit: in.GetUseLimit(),
	}
	if len(ci.CSR) == 0 {
		ci.CSR = nil
	}
	if in.GetTtl() == nil {
		return nil, status.Error(codes.InvalidArgument, "ttl: required")
	}
	if err := in.GetTtl().CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
	}
	if in.GetStartTime() != nil {
		if err := in.GetStartTime().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "start_time: %v", err)
		}
		ci.Start = in.GetStartTime().AsTime()
	}
	r, d, err := s.is.Create(ctx, id, ci)
	if err != nil {
		return nil, s.toStatus(ctx, "CreateRequest", err)
	}
	return &pb.CreateRequestResponse{Request: requestToProto(r), Decision: decisionToProto(d)}, nil
}

// GetRequest implements pb.IssuerServer.
func (s *Service) GetRequest(ctx context.Context, in *pb.GetRequestRequest) (*pb.AccessRequest, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	r, err := s.is.Get(ctx, id, in.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetRequest", err)
	}
	return requestToProto(r), nil
}

// ListRequests implements pb.IssuerServer.
func (s *Service) ListRequests(ctx context.Context, in *pb.ListRequestsRequest) (*pb.ListRequestsResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	li, err := listInput(in.GetStates(), in.GetRequester(), in.GetAwaitingMyReview())
	if err != nil {
		return nil, err
	}
	li.NeedsReview = in.GetNeedsReview()
	li.PageSize, li.PageToken = int(in.GetPageSize()), in.GetPageToken()
	rs, next, err := s.is.List(ctx, id, li)
	if err != nil {
		return nil, s.toStatus(ctx, "ListRequests", err)
	}
	out := &pb.ListRequestsResponse{NextPageToken: next}
	for _, r := range rs {
		out.Requests = append(out.Requests, requestToProto(r))
	}
	return out, nil
}

// ApproveRequest implements pb.IssuerServer.
func (s *Service) ApproveRequest(ctx context.Context, in *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	return s.review(ctx, in, true)
}

// DenyRequest implements pb.IssuerServer.
func (s *Service) DenyRequest(ctx context.Context, in *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	return s.review(ctx, in, false)
}

func (s *Service) review(ctx context.Context, in *pb.ReviewRequest, approve bool) (*pb.ReviewResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	res, err := s.is.ReviewWith(ctx, id, in.GetId(), ReviewInput{Approve: approve, Comment: in.GetComment(), Revoke: in.GetRevoke(), AckWait: DefaultAckTimeout})
	if err != nil {
		return nil, s.toStatus(ctx, "Review", err)
	}
	return &pb.ReviewResponse{Request: requestToProto(res.Request), Counted: res.Counted, Note: res.Note,
		Revoked: res.Revoked, VerifiersFollowing: int32(res.Following), VerifiersAcknowledged: int32(res.Acknowledged)}, nil
}

// CancelRequest implements pb.IssuerServer.
func (s *Service) CancelRequest(ctx context.Context, in *pb.CancelRequestRequest) (*pb.AccessRequest, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	r, err := s.is.Cancel(ctx, id, in.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "CancelRequest", err)
	}
	return requestToProto(r), nil
}

// ExtendGrant implements pb.IssuerServer.
func (s *Service) ExtendGrant(ctx context.Context, in *pb.ExtendGrantRequest) (*pb.AccessRequest, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	if in.GetTtl() == nil {
		return nil, status.Error(codes.InvalidArgument, "ttl: required: how much later the grant is to end")
	}
	if err := in.GetTtl().CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
	}
	r, err := s.is.Extend(ctx, id, in.GetId(), in.GetTtl().AsDuration(), in.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, "ExtendGrant", err)
	}
	return requestToProto(r), nil
}

// DefaultAckTimeout is how long RevokeGrant waits for verifiers'
// acknowledgements when the request does not say.
const DefaultAckTimeout = 2 * time.Second

// RevokeGrant implements pb.IssuerServer.
func (s *Service) RevokeGrant(ctx context.Context, in *pb.RevokeGrantRequest) (*pb.RevokeGrantResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	wait := DefaultAckTimeout
	if d := in.GetAckTimeout(); d != nil {
		wait = d.AsDuration()
		if d.CheckValid() != nil {
			wait = -1 // not a duration: Revoke refuses it, after the caller's permission
		}
	}
	res, err := s.is.Revoke(ctx, id, in.GetId(), in.GetReason(), wait)
	if err != nil {
		return nil, s.toStatus(ctx, "RevokeGrant", err)
	}
	return &pb.RevokeGrantResponse{Request: requestToProto(res.Request),
		VerifiersFollowing: int32(res.Following), VerifiersAcknowledged: int32(res.Acknowledged)}, nil
}

// AckRevocations implements pb.IssuerServer.
func (s *Service) AckRevocations(ctx context.Context, in *pb.AckRevocationsRequest) (*pb.AckRevocationsResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.is.AckRevocations(id, in.GetStreamId(), in.GetGrantIds()); err != nil {
		return nil, s.toStatus(ctx, "AckRevocations", err)
	}
	return &pb.AckRevocationsResponse{}, nil
}

// FetchGrant implements pb.IssuerServer. For a request made without a CSR
// the response carries no key; such grants reach workloads through the
// SPIFFE Workload API.
func (s *Service) FetchGrant(ctx context.Context, in *pb.FetchGrantRequest) (*pb.FetchGrantResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID(in.GetId()); err != nil {
		return nil, err
	}
	f, err := s.is.Fetch(ctx, id, in.GetId(), false)
	if err != nil {
		return nil, s.toStatus(ctx, "FetchGrant", err)
	}
	out := &pb.FetchGrantResponse{CertChain: f.CertChain, Request: requestToProto(f.Request)}
	for _, c := range s.is.cfg.CA.Bundle().X509Authorities() {
		out.Bundle = append(out.Bundle, c.Raw)
	}
	return out, nil
}

// WatchRequests implements pb.IssuerServer.
func (s *Service) WatchRequests(in *pb.WatchRequestsRequest, stream grpc.ServerStreamingServer[pb.RequestEvent]) error {
	ctx := stream.Context()
	id, err := caller(ctx)
	if err != nil {
		return err
	}
	li, err := listInput(in.GetStates(), in.GetRequester(), in.GetAwaitingMyReview())
	if err != nil {
		return err
	}
	li.NeedsReview = in.GetNeedsReview()
	err = s.is.Watch(ctx, id, li, func(r *Request) error {
		return stream.Send(&pb.RequestEvent{Request: requestToProto(r)})
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return s.toStatus(ctx, "WatchRequests", err)
}

// ExportAudit implements pb.IssuerServer: the audit log as JSON Lines, in
// chunks, for holders of the export_audit permission.
func (s *Service) ExportAudit(in *pb.ExportAuditRequest, stream grpc.ServerStreamingServer[pb.ExportAuditChunk]) error {
	ctx := stream.Context()
	id, err := caller(ctx)
	if err != nil {
		return err
	}
	p, err := s.is.policy()
	if err != nil {
		return s.toStatus(ctx, "ExportAudit", err)
	}
	if !p.Allowed(policy.ExportAudit, id) {
		return s.toStatus(ctx, "ExportAudit", fmt.Errorf("%w: exporting the audit log needs the %s permission", ErrPermission, policy.ExportAudit))
	}
	if in.GetTo() != 0 && in.GetTo() < in.GetFrom() {
		return status.Errorf(codes.InvalidArgument, "to: %d is before from %d", in.GetTo(), in.GetFrom())
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&pb.ExportAuditChunk{Data: b}) }}
	to := in.GetTo()
	if to == 0 {
		to = ^uint64(0)
	}
	if size := s.audit.Size(); in.GetFrom() > size {
		return status.Errorf(codes.InvalidArgument, "from: %d is past the end of the log (%d entries)", in.GetFrom(), size)
	}
	if err := s.audit.Export(ctx, w, in.GetFrom(), to); err != nil {
		return s.toStatus(ctx, "ExportAudit", err)
	}
	if err := w.flush(); err != nil {
		return err
	}
	rec := record(id, audit.ActionAuditExported, map[string]string{"from": fmt.Sprint(in.GetFrom()), "to": fmt.Sprint(in.GetTo())})
	return s.toStatus(ctx, "ExportAudit", s.is.cfg.Store.Audit(ctx, rec))
}

// WatchRevocations implements pb.IssuerServer.
func (s *Service) WatchRevocations(in *pb.WatchRevocationsRequest, stream grpc.ServerStreamingServer[pb.RevocationEvent]) error {
	ctx := stream.Context()
	id, err := caller(ctx)
	if err != nil {
		return err
	}
	hb := max(s.Heartbeat, 10*time.Millisecond)
	ticker := time.NewTicker(hb)
	defer ticker.Stop()
	err = s.is.WatchRevocations(ctx, id, in.GetStreamId(), ticker.C, func(snapshot bool, rs []Revocation) error {
		ev := &pb.RevocationEvent{Snapshot: snapshot, Time: timestamppb.New(s.is.now()), HeartbeatInterval: durationpb.New(hb)}
		for _, r := range rs {
			ev.Revoked = append(ev.Revoked, &pb.Revocation{GrantId: r.GrantID, NotAfter: timestamppb.New(r.NotAfter)})
		}
		return stream.Send(ev)
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return s.toStatus(ctx, "WatchRevocations", err)
}

// ReportUse implements pb.IssuerServer.
func (s *Service) ReportUse(ctx context.Context, in *pb.ReportUseRequest) (*pb.ReportUseResponse, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	// The grant ID and the count are checked after the caller's permission.
	rep, err := s.is.ReportUse(ctx, id, in.GetGrantId(), in.GetUses())
	if err != nil {
		return nil, s.toStatus(ctx, "ReportUse", err)
	}
	return &pb.ReportUseResponse{TotalUses: rep.Total, UseLimit: rep.Limit, Exhausted: rep.Exhausted}, nil
}

// chunkWriter sends what is written in chunks of up to 64 KiB.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= 64<<10 {
		if err := w.send(w.buf[:64<<10]); err != nil {
			return 0, err
		}
		w.buf = append([]byte(nil), w.buf[64<<10:]...)
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = nil
	return err
}

func checkID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "id: required")
	}
	if !validID(id) {
		return status.Errorf(codes.InvalidArgument, "id: %q is not a request ID", id)
	}
	return nil
}

func listInput(states []pb.State, requester string, awaiting bool) (ListInput, error) {
	li := ListInput{Requester: requester, AwaitingMyReview: awaiting}
	for _, st := range states {
		s, ok := stateFromProto(st)
		if !ok {
			return li, status.Errorf(codes.InvalidArgument, "states: unknown state %v", st)
		}
		li.States = append(li.States, s)
	}
	return li, nil
}
