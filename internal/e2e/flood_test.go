package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/internal/syncbuf"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestFloodFigures measures, by hand, what a flood costs a real jitd
// process with and without its limits: streams one requester holds, jitd's
// RSS and descriptors, and the latency of other callers' requests. It is
// the source of the flood figures in BENCHMARKS.md. It runs only when
// JITGRANT_FLOOD=STREAMS,SILENT[,NOFILE] is set (NOFILE: run jitd with
// that descriptor limit), e.g.
//
//	JITGRANT_FLOOD=10000,10000 go test ./internal/e2e -run TestFloodFigures -v -timeout 30m
//	JITGRANT_FLOOD=0,10500,10000 go test ./internal/e2e -run TestFloodFigures -v -timeout 30m
//
// Everything is on 127.0.0.1, bounded in count, and ends with the test.
func TestFloodFigures(t *testing.T) {
	spec := os.Getenv("JITGRANT_FLOOD")
	if spec == "" {
		t.Skip("set JITGRANT_FLOOD=STREAMS,SILENT to measure floods (BENCHMARKS.md)")
	}
	parts := append(strings.Split(spec, ","), "0", "0")
	streams, err1 := strconv.Atoi(parts[0])
	silent, err2 := strconv.Atoi(parts[1])
	nofile, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || nofile < 0 || streams < 0 || silent < 0 || streams > 200_000 || silent > 19_900 {
		t.Fatalf("JITGRANT_FLOOD=%q: want STREAMS,SILENT (at most 200000 and 19900)", spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/jitd")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unlimited := "limits:\n  streams_per_identity: 1048576\n  streams_per_connection: 1048576\n  max_connections: 16777216\n  handshake_timeout: 120s\n"
	for _, mode := range []struct{ name, limits string }{
		{"without limits (gRPC defaults)", unlimited},
		{"with the default limits", ""},
	} {
		t.Run(mode.name, func(t *testing.T) {
			floodOnce(ctx, t, filepath.Join(bin, "jitd"), mode.limits, streams, silent, nofile)
		})
	}
}

// floodProc is one jitd serve process under test.
type floodProc struct {
	cmd          *exec.Cmd
	api, metrics string
	dir          jitd.DataDir
	ids          map[string]string
	td           spiffeid.TrustDomain
	conns        []*grpc.ClientConn
}

func floodOnce(ctx context.Context, t *testing.T, jitdBin, limits string, streams, silent, nofile int) {
	root := t.TempDir()
	p := &floodProc{dir: jitd.DataDir(filepath.Join(root, "data")), ids: map[string]string{}, td: spiffeid.RequireTrustDomainFromString(trustDomain)}
	if err := jitd.Init(jitd.InitConfig{Dir: p.dir, TrustDomain: trustDomain, KeyType: "ec-p256"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.dir.Policy(), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{dev, alice} {
		out := filepath.Join(root, "id", who)
		if _, err := jitd.Enroll(ctx, jitd.EnrollConfig{Dir: p.dir, ID: personID(who), TTL: time.Hour, Out: out}); err != nil {
			t.Fatal(err)
		}
		p.ids[who] = out
	}
	p.api, p.metrics = freeAddr(t), freeAddr(t)
	conf := filepath.Join(root, "jitd.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("data_dir: %s\nlisten: %s\nmetrics_listen: %s\n%s", p.dir, p.api, p.metrics, limits)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.CommandContext(ctx, jitdBin, "serve", "--config", conf)
	if nofile > 0 {
		p.cmd = exec.CommandContext(ctx, "bash", "-c", `ulimit -n "$0" && exec "$1" serve --config "$2"`, strconv.Itoa(nofile), jitdBin, conf)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}()
	ready, exited := make(chan struct{}), make(chan struct{})
	var logs syncbuf.Buffer
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(&logs, sc.Text())
			if strings.Contains(sc.Text(), `msg="jitd: serving"`) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("jitd exited:\n%s", logs.String())
	case <-ctx.Done():
		t.Fatal("jitd never started")
	}
	defer func() {
		if t.Failed() {
			t.Logf("jitd log:\n%s", logs.String())
		}
	}()
	defer func() {
		for _, c := range p.conns {
			c.Close()
		}
	}()

	aliceAPI := p.client(t, alice)
	t.Logf("idle:                     RSS %s, %d descriptors, request-to-issue %s", p.rss(t), p.fds(t), p.latency(ctx, t, aliceAPI, 50))

	if streams > 0 {
		// One requester opens streams WatchRequests streams over 40
		// connections.
		floodCtx, stop := context.WithCancel(ctx)
		var refused, other atomic.Int64
		var wg sync.WaitGroup
		conns := make([]pb.IssuerClient, 40)
		for i := range conns {
			conns[i] = p.client(t, dev)
		}
		start := time.Now()
		for i := range streams {
			s, err := conns[i%len(conns)].WatchRequests(floodCtx, &pb.WatchRequestsRequest{States: []pb.State{pb.State_STATE_PENDING}})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				_, err := s.Recv()
				switch status.Code(err) {
				case codes.ResourceExhausted:
					refused.Add(1)
				case codes.Canceled:
				default:
					other.Add(1)
				}
			})
		}
		// Wait until jitd has answered every stream: held or refused.
		var held float64
		for {
			held = p.metric(t, "jitgrant_issuer_watchers", `stream="requests"`)
			if int(held)+int(refused.Load())+int(other.Load()) >= streams || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%d streams opened in %s: %v held, %d refused (ResourceExhausted), %d other; RSS %s, %d descriptors, request-to-issue %s",
			streams, time.Since(start).Round(time.Millisecond), held, refused.Load(), other.Load(), p.rss(t), p.fds(t), p.latency(ctx, t, aliceAPI, 50))
		stop()
		wg.Wait()
	}

	if silent > 0 {
		// silent connections that never send a byte (a TLS handshake
		// that never starts).
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range silent {
			c, err := net.DialTimeout("tcp", p.api, 2*time.Second)
			if err != nil {
				t.Logf("dial %d: %v", len(held), err)
				break
			}
			held = append(held, c)
		}
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		start := time.Now()
		_, err := p.client(t, alice).CreateRequest(callCtx, &pb.CreateRequestRequest{Scopes: []*pb.Scope{{Method: mBalance}}, Ttl: durationpb.New(5 * time.Minute)})
		t.Logf("%d silent connections: jitd holds %d descriptors (limit %d), RSS %s; a new caller's first request took %s (%v); cap waits %v",
			len(held), p.fds(t), nofile, p.rss(t), time.Since(start).Round(time.Millisecond), status.Code(err),
			p.metric(t, "jitgrant_listener_cap_reached_total", `listener="api"`))
	}
}

// client dials the API as who, on a connection of its own.
func (p *floodProc) client(t *testing.T, who string) pb.IssuerClient {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(p.ids[who], "svid.pem"), filepath.Join(p.ids[who], "svid.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(p.td, filepath.Join(p.ids[who], "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(p.api, grpc.WithTransportCredentials(verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(jitd.ServerID(p.td)))))
	if err != nil {
		t.Fatal(err)
	}
	p.conns = append(p.conns, cc)
	return pb.NewIssuerClient(cc)
}

// latency returns the median and the 99th percentile of n auto-approved
// requests (CreateRequest returning an issued grant), one after another.
func (p *floodProc) latency(ctx context.Context, t *testing.T, c pb.IssuerClient, n int) string {
	t.Helper()
	var ds []time.Duration
	for range n {
		start := time.Now()
		res, err := c.CreateRequest(ctx, &pb.CreateRequestRequest{Scopes: []*pb.Scope{{Method: mBalance}}, Ttl: durationpb.New(5 * time.Minute)})
		if err != nil {
			return fmt.Sprintf("failing (%v)", err)
		}
		if res.GetRequest().GetState() != pb.State_STATE_ISSUED {
			t.Fatalf("request %v, want ISSUED", res.GetRequest().GetState())
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return fmt.Sprintf("p50 %s p99 %s", ds[len(ds)/2].Round(100*time.Microsecond), ds[len(ds)*99/100].Round(100*time.Microsecond))
}

func (p *floodProc) rss(t *testing.T) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return "?"
}

func (p *floodProc) fds(t *testing.T) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// metric scrapes one value; -1 when the endpoint does not answer within
// ten seconds (jitd out of descriptors).
func (p *floodProc) metric(t *testing.T, name, labels string) float64 {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	v, _ := metric(string(b), name, labels)
	return v
}
