package issuer

import (
	"strings"
	"testing"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeCodec checks that the codec never panics, decodes what
// protobuf-go decodes exactly as it does, and turns only a message with a
// string field that is not UTF-8 into a refusal that names a field.
func FuzzDecodeCodec(f *testing.F) {
	valid, _ := proto.Marshal(&pb.CreateRequestRequest{Scopes: []*pb.Scope{{Method: "/a.B/C", Resources: []string{"x"}}}, Reason: "INC-1"})
	f.Add(valid)
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte("\xff")))
	f.Add(protowire.AppendBytes(protowire.AppendTag(valid, 1, protowire.BytesType), protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte("a\xc3"))))
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want pb.CreateRequestRequest
		wantErr := proto.Unmarshal(b, &want)
		var got pb.CreateRequestRequest
		err := decodeCodec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got)
		refusal := decodeError(&got)
		switch {
		case wantErr == nil:
			if err != nil || refusal != nil || !proto.Equal(&got, &want) {
				t.Fatalf("valid message: error %v, refusal %v, decoded %v, want %v", err, refusal, &got, &want)
			}
		case err == nil:
			st := status.Convert(refusal)
			if refusal == nil || st.Code() != codes.InvalidArgument || !strings.HasSuffix(st.Message(), ": not valid UTF-8") {
				t.Fatalf("protobuf-go refused (%v); the codec accepted it with refusal %v", wantErr, refusal)
			}
		}
	})
}
