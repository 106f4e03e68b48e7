//go:build linux

package attest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer/attest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The test binary doubles as the child processes of the tests: TestMain
// looks at childModeEnv before running tests.
const (
	childModeEnv   = "JITGRANT_ATTEST_TEST_CHILD" // "call", "connect" or "exit"
	childSocketEnv = "JITGRANT_ATTEST_TEST_SOCKET"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childModeEnv); mode {
	case "":
		os.Exit(m.Run())
	case "call":
		os.Exit(childCall(os.Getenv(childSocketEnv)))
	case "connect":
		// Connect and exit at once, leaving the connection to be
		// accepted after the process is gone.
		if _, err := net.Dial("unix", os.Getenv(childSocketEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	case "exit":
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", childModeEnv, mode)
		os.Exit(2)
	}
}

// childEnv returns the environment of a child in the given mode, talking to
// the socket sock if not "". Under the race detector the child skips its
// default one-second pause at exit.
func childEnv(mode, sock string) []string {
	env := append(os.Environ(), childModeEnv+"="+mode, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	if sock != "" {
		env = append(env, childSocketEnv+"="+sock)
	}
	return env
}

// childCall makes one Health.Check call on the Unix socket sock and prints
// the status code.
func childCall(sock string) int {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer conn.Close()
	// A bound against hanging, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println(status.Code(err))
	return 0
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// call is what the test server saw of one call.
type call struct {
	peer attest.PeerInfo
	sels attest.Selectors
	err  error    // from Attest
	ids  []string // matched SPIFFE IDs, in order
}

// testServer is a Health service that does what the Workload API will do:
// attest the caller, match entries, and refuse callers without identity.
type testServer struct {
	healthpb.UnimplementedHealthServer
	att     *attest.Attestor
	entries atomic.Pointer[attest.Entries]

	mu    sync.Mutex
	calls map[int]call // by caller PID
}

func (s *testServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	p, ok := attest.PeerFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer credentials")
	}
	c := call{peer: p}
	c.sels, c.err = s.att.Attest(ctx, p)
	if c.err == nil {
		for _, e := range s.entries.Load().Match(c.sels) {
			c.ids = append(c.ids, e.ID.String())
		}
	}
	s.mu.Lock()
	s.calls[p.PID] = c
	s.mu.Unlock()
	if len(c.ids) == 0 {
		return nil, status.Error(codes.PermissionDenied, "no identity issued to the caller")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// call returns what the server saw of the call from pid.
func (s *testServer) call(t *testing.T, pid int) call {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[pid]
	if !ok {
		t.Fatalf("no call from pid %d", pid)
	}
	return c
}

// setEntries parses cfgs and makes them the server's entries.
func (s *testServer) setEntries(t *testing.T, cfgs []attest.EntryConfig) {
	t.Helper()
	es, err := attest.ParseEntries(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	s.entries.Store(&es)
}

// startServer serves the test service on a Unix socket and returns it and
// the socket's path.
func startServer(t *testing.T) (*testServer, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	att, err := attest.New(attest.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{att: att, calls: make(map[int]call)}
	ts.entries.Store(&attest.Entries{})
	srv := grpc.NewServer(grpc.Creds(attest.Credentials()))
	healthpb.RegisterHealthServer(srv, ts)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return ts, sock
}

// procStartTime reads a process's start time (field 22 of its stat) the
// simple way, to check the package against.
func procStartTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	st, err := strconv.ParseUint(fields[22-3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCredentialsOverGRPC(t *testing.T) {
	ts, sock := startServer(t)
	ts.setEntries(t, []attest.EntryConfig{{
		ID:        "spiffe://example.org/test",
		Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid())},
		TTL:       "1h",
	}})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	c := ts.call(t, os.Getpid())
	want := attest.PeerInfo{PID: os.Getpid(), UID: os.Getuid(), GID: os.Getgid(), StartTime: procStartTime(t, os.Getpid())}
	if c.peer != want {
		t.Errorf("peer = %+v, want %+v", c.peer, want)
	}
	if c.err != nil || !slices.Equal(c.ids, []string{"spiffe://example.org/test"}) {
		t.Errorf("attested %v, %v; want spiffe://example.org/test", c.ids, c.err)
	}
}

func TestServerHandshake(t *testing.T) {
	unixPair := func(t *testing.T) net.Conn {
		lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		return acceptDialed(t, lis, "unix")
	}
	tests := []struct {
		name    string
		conn    func(t *testing.T) net.Conn
		want    attest.PeerInfo
		wantErr error
	}{
		{
			name: "unix socket",
			conn: unixPair,
			want: attest.PeerInfo{PID: os.Getpid(), UID: os.Getuid(), GID: os.Getgid(), StartTime: procStartTime(t, os.Getpid())},
		},
		{
			name: "tcp",
			conn: func(t *testing.T) net.Conn {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Skipf("no loopback TCP: %v", err)
				}
				defer lis.Close()
				return acceptDialed(t, lis, "tcp")
			},
			wantErr: attest.ErrNotUnix,
		},
		{
			name: "pipe",
			conn: func(t *testing.T) net.Conn {
				a, b := net.Pipe()
				t.Cleanup(func() { a.Close(); b.Close() })
				return a
			},
			wantErr: attest.ErrNotUnix,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := tt.conn(t)
			got, info, err := attest.Credentials().ServerHandshake(conn)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ServerHandshake error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ServerHandshake: %v", err)
			}
			if got != conn {
				t.Error("ServerHandshake did not return the connection as is")
			}
			if info.AuthType() != "jitgrant-peercred" || info != tt.want {
				t.Errorf("AuthInfo = %#v, want %#v", info, tt.want)
			}
		})
	}
}

// acceptDialed dials lis and returns the server side of the connection.
func acceptDialed(t *testing.T, lis net.Listener, network string) net.Conn {
	t.Helper()
	client, err := net.Dial(network, lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server
}

func TestCredentialsInfo(t *testing.T) {
	c := attest.Credentials()
	if got := c.Info().SecurityProtocol; got != "jitgrant-peercred" {
		t.Errorf("SecurityProtocol = %q", got)
	}
	if _, _, err := c.Clone().ClientHandshake(t.Context(), "x", nil); err == nil {
		t.Error("ClientHandshake succeeded, want an error: the credentials are server-side")
	}
}

func TestPeerFromContext(t *testing.T) {
	info := attest.PeerInfo{PID: 7, UID: 1, GID: 2, StartTime: 3}
	tests := []struct {
		name   string
		ctx    context.Context
		want   attest.PeerInfo
		wantOK bool
	}{
		{name: "no peer", ctx: t.Context()},
		{name: "peer without auth info", ctx: peer.NewContext(t.Context(), &peer.Peer{})},
		{name: "other auth info", ctx: peer.NewContext(t.Context(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})},
		{name: "peer info", ctx: peer.NewContext(t.Context(), &peer.Peer{AuthInfo: info}), want: info, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := attest.PeerFromContext(tt.ctx)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("PeerFromContext = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
