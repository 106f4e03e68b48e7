package verifier

import (
	"context"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UnaryInterceptor authorizes a unary RPC. It is a grpc.UnaryServerInterceptor.
func (v *Verifier) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	pc := v.lookup(ctx)
	r, resource := v.decide(pc, info.FullMethod, req, false)
	v.record(ctx, r, pc, info.FullMethod, resource)
	if !r.allowed() {
		return nil, v.denial(r, pc, info.FullMethod)
	}
	return handler(newContext(ctx, pc), req)
}

// StreamInterceptor authorizes a streaming RPC when it starts. For a method
// with a resource field, the resource of each message the client sends is
// checked as it arrives. It is a grpc.StreamServerInterceptor.
func (v *Verifier) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	pc := v.lookup(ctx)
	r, _ := v.decide(pc, info.FullMethod, nil, true)
	v.record(ctx, r, pc, info.FullMethod, "")
	if !r.allowed() {
		return v.denial(r, pc, info.FullMethod)
	}
	ws := &stream{ServerStream: ss, ctx: newContext(ctx, pc)}
	if field, ok := v.fields[info.FullMethod]; ok && r == reasonAllowed {
		ws.v, ws.pc, ws.method, ws.field = v, pc, info.FullMethod, field
	}
	return handler(srv, ws)
}

// stream carries the grant in its context and, when v is set, checks the
// resource of every message received.
type stream struct {
	grpc.ServerStream
	ctx    context.Context
	v      *Verifier
	pc     *peerConn
	method string
	field  string
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil || s.v == nil {
		return err
	}
	r := reasonAllowed
	resource, ok := readResource(m, s.field)
	switch {
	case !ok:
		r = reasonResourceField
	case resource != "" && !grant.CanonicalResource(resource):
		r = reasonNotCanonical
	case s.pc.match.Authorize(s.method, resource) != grant.Allowed:
		r = reasonResource
	}
	if r != reasonAllowed {
		s.v.record(s.ctx, r, s.pc, s.method, resource)
		return s.v.denial(r, s.pc, s.method)
	}
	return nil
}

// MsgGrantNotIdentity is the message of the PermissionDenied status with
// which a grant certificate is refused where only identity SVIDs are
// accepted (Config.IdentityMethods).
const MsgGrantNotIdentity = "jitgrant: a grant certificate is not an identity: present your identity SVID"

// denial is the status a client sees: the code and a short reason, no more.
func (v *Verifier) denial(r reason, pc *peerConn, method string) error {
	switch r {
	case reasonUnauthenticated:
		return status.Error(codes.Unauthenticated, "jitgrant: peer not verified")
	case reasonGrantNotIdentity:
		return status.Error(codes.PermissionDenied, MsgGrantNotIdentity)
	case reasonNoGrant, reasonMethod:
		return status.Error(codes.PermissionDenied, "jitgrant: no grant for "+method)
	case reasonResource, reasonResourceField:
		return status.Error(codes.PermissionDenied, "jitgrant: resource not granted for "+method)
	case reasonNoResourceField:
		return status.Error(codes.PermissionDenied, "jitgrant: resource not granted for "+method+
			": the grant is limited to resources and this service reads none for this method")
	case reasonNotCanonical:
		return status.Error(codes.PermissionDenied, `jitgrant: resource refused for `+method+`: empty, "." or ".." segment`)
	case reasonNotYetValid:
		what := "certificate"
		if pc.grant != nil {
			what = "grant"
		}
		ahead := pc.notBefore.Sub(v.cfg.Clock()).Round(time.Second)
		return status.Errorf(codes.PermissionDenied,
			"jitgrant: %s not yet valid: it starts at %s, %s ahead of this server's clock: check clock skew between the issuer and this server (NTP)",
			what, pc.notBefore.UTC().Format(time.RFC3339), ahead)
	case reasonExpired:
		return status.Error(codes.PermissionDenied, "jitgrant: grant expired")
	case reasonRevoked:
		return status.Error(codes.PermissionDenied, "jitgrant: grant revoked")
	case reasonStale:
		return status.Error(codes.PermissionDenied, "jitgrant: revocation status unknown")
	case reasonUseLimit:
		return status.Error(codes.PermissionDenied, "jitgrant: grant use limit reached")
	}
	return status.Error(codes.PermissionDenied, "jitgrant: denied")
}

// readResource reads the resource of a call from its request message: the
// string at the dotted field path, "" when a message on the path is unset. It
// reports false when the path cannot be read from this message type (a
// misconfiguration, denied: fail closed).
func readResource(req any, path string) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return "", false
	}
	return readField(m.ProtoReflect(), path)
}

func readField(msg protoreflect.Message, path string) (string, bool) {
	for {
		name, rest, nested := strings.Cut(path, ".")
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() {
			return "", false
		}
		if !nested {
			if fd.Kind() != protoreflect.StringKind {
				return "", false
			}
			return msg.Get(fd).String(), true
		}
		if fd.Message() == nil {
			return "", false
		}
		if !msg.Has(fd) {
			return "", true
		}
		msg, path = msg.Get(fd).Message(), rest
	}
}

type ctxKey struct{}

func newContext(ctx context.Context, pc *peerConn) context.Context {
	return context.WithValue(ctx, ctxKey{}, pc)
}

// GrantFromContext returns the grant of the RPC in ctx, as the verifier's
// interceptors checked it. It returns false in a handler of a public method
// called without a grant, and outside a verified RPC.
func GrantFromContext(ctx context.Context) (*grant.Grant, bool) {
	pc, ok := ctx.Value(ctxKey{}).(*peerConn)
	if !ok || pc.grant == nil {
		return nil, false
	}
	return pc.grant, true
}

// PeerIDFromContext returns the SPIFFE ID of the verified caller of the RPC
// in ctx, whether it presented an identity SVID or a grant certificate. Code
// that decides who the caller is (not what it may call) wants
// [IdentityFromContext].
func PeerIDFromContext(ctx context.Context) (spiffeid.ID, bool) {
	pc, ok := ctx.Value(ctxKey{}).(*peerConn)
	if !ok {
		return spiffeid.ID{}, false
	}
	return pc.id, true
}

// IdentityFromContext returns the SPIFFE ID of the verified caller of the RPC
// in ctx when it presented an identity SVID. It returns false when the caller
// presented a grant certificate: a grant is not its holder's identity, and
// must not stand for it in an authentication or a permission check.
func IdentityFromContext(ctx context.Context) (spiffeid.ID, bool) {
	pc, ok := ctx.Value(ctxKey{}).(*peerConn)
	if !ok || pc.grant != nil {
		return spiffeid.ID{}, false
	}
	return pc.id, true
}
