package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeWorkloadAPI serves one X.509-SVID and its bundle over the SPIFFE
// Workload API.
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	resp *workload.X509SVIDResponse
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if err := stream.Send(f.resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestWorkloadAPIIdentity: with no identity flags, jitctl takes its SVID and
// bundle from the Workload API at $SPIFFE_ENDPOINT_SOCKET.
func TestWorkloadAPIIdentity(t *testing.T) {
	e := newEnv(t, nil)
	svid, err := x509svid.Load(filepath.Join(e.ids[dev], "svid.pem"), filepath.Join(e.ids[dev], "svid.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, c := range svid.Certificates {
		chain = append(chain, c.Raw...)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(e.ids[dev], "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var cas []byte
	for _, c := range bundle.X509Authorities() {
		cas = append(cas, c.Raw...)
	}
	api := &fakeWorkloadAPI{resp: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: svid.ID.String(), X509Svid: chain, X509SvidKey: key, Bundle: cas,
	}}}}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, api)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	t.Setenv(jitctl.EnvWorkloadAPI, "unix://"+sock)

	var out, errOut bytes.Buffer
	code := jitctl.Main(context.Background(), []string{"--server", e.srv.Addr(), "request", "--out", filepath.Join(t.TempDir(), "g"),
		"--scope", mBalance, "--ttl", "5m"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("request with a Workload API identity: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	id, _, _ := strings.Cut(out.String(), "\n")
	if r := e.show(dev, id); r.GetRequester() != personID(dev) {
		t.Errorf("requester %q, want dev's ID from the Workload API SVID", r.GetRequester())
	}
}
