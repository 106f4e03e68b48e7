package issuer

import (
	"context"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DecodeOptions returns the gRPC server options that answer a request
// whose string field is not valid UTF-8 with InvalidArgument naming the
// field ("reason: not valid UTF-8", "scopes[1].method: ..."), where
// grpc-go alone answers Internal ("grpc: failed to unmarshal").
//
// grpc-go turns any error of a codec's Unmarshal into Internal, so the
// codec installed here does not fail such a message: it leaves it empty but
// for a note of the bad field, kept in the message's unknown fields, and
// the interceptors installed with it refuse the call before any handler
// reads the message. Use the options together, on a server whose messages
// are all protobuf.
func DecodeOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(decodeCodec{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := decodeError(req); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, decodeStream{ss})
		}),
	}
}

// badUTF8Field is the field number of the note decodeCodec leaves in a
// message's unknown fields: the largest a field may have, which no message
// of the API declares.
const badUTF8Field protowire.Number = protowire.MaxValidNumber

// decodeCodec is grpc-go's protobuf codec, but for a message with a string
// field that is not valid UTF-8 (see DecodeOptions).
type decodeCodec struct{}

func (decodeCodec) Name() string { return "proto" }

func (decodeCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("issuer: decoding: message is %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	err := proto.Unmarshal(b, m)
	if err == nil {
		return nil
	}
	path := badUTF8(b, m.ProtoReflect().Descriptor())
	if path == "" {
		return err
	}
	proto.Reset(m)
	note := protowire.AppendTag(nil, badUTF8Field, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendString(note, path))
	return nil
}

// decodeError returns the InvalidArgument status for req if decodeCodec
// left a note in it, and nil otherwise.
func decodeError(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == badUTF8Field && typ == protowire.BytesType {
			path, n := protowire.ConsumeString(b)
			if n < 0 {
				return nil
			}
			return status.Errorf(codes.InvalidArgument, "%s: not valid UTF-8", path)
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// decodeStream refuses a stream's message that decodeCodec left a note in.
type decodeStream struct{ grpc.ServerStream }

func (s decodeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return decodeError(m)
}

// badUTF8 returns the path of the first string field of b, the wire form of
// a message of type md, that is not valid UTF-8 ("reason", "scopes[1].method"),
// or "" when there is none or b does not parse.
func badUTF8(b []byte, md protoreflect.MessageDescriptor) string {
	seen := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		name := string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, seen[num])
		}
		seen[num]++
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if p := badUTF8(v, fd.Message()); p != "" {
				return name + "." + p
			}
		}
	}
	return ""
}
