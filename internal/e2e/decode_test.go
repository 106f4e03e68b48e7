package e2e

import (
	"context"
	"strings"
	"testing"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// rawCodec sends and receives messages as the bytes given: a client that
// can send what protobuf-go refuses to marshal.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// withBadString returns m's wire form followed by its string field name
// holding bytes that are not UTF-8.
func withBadString(t *testing.T, m proto.Message, name string) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		t.Fatalf("%T has no field %s", m, name)
	}
	b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
	return protowire.AppendBytes(b, []byte("caf\xe9"))
}

// TestInvalidUTF8IsInvalidArgument: a request whose string field is not
// UTF-8 gets InvalidArgument naming the field, on unary and streaming
// methods, nested fields and list elements included; not Internal.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	e := newEnv(t, nil)
	cc := e.conn(dev)
	id := "r" + strings.Repeat("0", 26)
	// scopes[1].method is not UTF-8: a nested message in a list.
	scope0, _ := proto.Marshal(&pb.Scope{Method: mBalance})
	scope1 := withBadString(t, &pb.Scope{}, "method")
	nested := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), scope0)
	nested = protowire.AppendBytes(protowire.AppendTag(nested, 1, protowire.BytesType), scope1)
	tests := []struct {
		name, method string
		stream       bool
		msg          []byte
		wantField    string
	}{
		{"create reason", "CreateRequest", false, withBadString(t, &pb.CreateRequestRequest{Scopes: []*pb.Scope{{Method: mBalance}}}, "reason"), "reason"},
		{"create scope method", "CreateRequest", false, nested, "scopes[1].method"},
		{"get id", "GetRequest", false, withBadString(t, &pb.GetRequestRequest{}, "id"), "id"},
		{"approve comment", "ApproveRequest", false, withBadString(t, &pb.ReviewRequest{Id: id}, "comment"), "comment"},
		{"revoke reason", "RevokeGrant", false, withBadString(t, &pb.RevokeGrantRequest{Id: id}, "reason"), "reason"},
		{"list requester", "ListRequests", false, withBadString(t, &pb.ListRequestsRequest{}, "requester"), "requester"},
		{"ack second grant ID", "AckRevocations", false, withBadString(t, &pb.AckRevocationsRequest{StreamId: "s", GrantIds: []string{id}}, "grant_ids"), "grant_ids[1]"},
		{"report use grant ID", "ReportUse", false, withBadString(t, &pb.ReportUseRequest{Uses: 1}, "grant_id"), "grant_id"},
		{"watch requests requester", "WatchRequests", true, withBadString(t, &pb.WatchRequestsRequest{}, "requester"), "requester"},
		{"watch revocations stream ID", "WatchRevocations", true, withBadString(t, &pb.WatchRevocationsRequest{}, "stream_id"), "stream_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			full := "/jitgrant.v1.Issuer/" + tt.method
			in, out := tt.msg, []byte(nil)
			var err error
			if tt.stream {
				var s grpc.ClientStream
				s, err = cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full, grpc.ForceCodecV2(rawCodec{}))
				if err == nil {
					if err = s.SendMsg(&in); err == nil {
						_ = s.CloseSend()
						err = s.RecvMsg(&out)
					}
				}
			} else {
				err = cc.Invoke(ctx, full, &in, &out, grpc.ForceCodecV2(rawCodec{}))
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tt.wantField+": ") || !strings.Contains(st.Message(), "UTF-8") {
				t.Errorf("%s: %v, want InvalidArgument naming %s", tt.method, err, tt.wantField)
			}
		})
	}
	// A well-formed request still works through the same codec.
	if _, err := pb.NewIssuerClient(cc).GetRequest(context.Background(), &pb.GetRequestRequest{Id: id}); status.Code(err) != codes.NotFound {
		t.Errorf("GetRequest of an unknown ID: %v, want NotFound", err)
	}
}
