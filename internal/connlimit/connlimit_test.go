package connlimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	metrics := NewCollector()
	l, err := NewListener(inner, ListenerConfig{Name: "api", Max: 2, Logger: slog.New(slog.NewTextHandler(logs, nil)), Collector: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(syscall.Conn); !ok {
		t.Error("an accepted connection hides its descriptor")
	}
	if got := testutil.ToFloat64(metrics.open.WithLabelValues("api")); got != 2 {
		t.Errorf("open = %v, want 2", got)
	}
	// The third waits at the cap until one closes; closing twice frees
	// one slot.
	third := make(chan net.Conn)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		third <- c
	}()
	for testutil.ToFloat64(metrics.reached.WithLabelValues("api")) < 1 {
		select {
		case c := <-third:
			t.Fatalf("accepted %v past the cap", c.RemoteAddr())
		default:
			pause()
		}
	}
	a.Close()
	a.Close()
	c := <-third
	if got := testutil.ToFloat64(metrics.open.WithLabelValues("api")); got != 2 {
		t.Errorf("open = %v, want 2 after a double close", got)
	}
	if !strings.Contains(logs.String(), "connection cap reached") || !strings.Contains(logs.String(), "below the connection cap again") {
		t.Errorf("logs:\n%s", logs)
	}
	// A waiting Accept ends when the listener closes.
	done := make(chan error)
	go func() { _, err := l.Accept(); done <- err }()
	for testutil.ToFloat64(metrics.reached.WithLabelValues("api")) < 2 {
		pause()
	}
	l.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	b.Close()
	c.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(metrics); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 5 {
		t.Errorf("gathered %d series, %v", n, err)
	}
}

// TestListenerEvict: at the cap, the oldest connection still in its
// handshake is closed to make room; established ones never are.
func TestListenerEvict(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewCollector()
	l, err := NewListener(inner, ListenerConfig{Name: "api", Max: 1, EvictHandshaking: true, Logger: slog.New(slog.DiscardHandler), Collector: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var clients []net.Conn
	dial := func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial()
	dial()
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept() // evicts the first, still in its handshake
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.evict.WithLabelValues("api")); got != 1 {
		t.Errorf("evicted = %v, want 1", got)
	}
	if n, err := clients[0].Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the evicted connection reads %d, %v; want it closed", n, err)
	}
	// b ends its handshake: it is never evicted, so a third waits.
	b.SetDeadline(time.Time{})
	dial()
	third := make(chan net.Conn)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		third <- c
	}()
	for testutil.ToFloat64(metrics.reached.WithLabelValues("api")) < 2 {
		pause()
	}
	select {
	case <-third:
		t.Fatal("an established connection was evicted")
	default:
	}
	b.Close()
	(<-third).Close()
	if got := testutil.ToFloat64(metrics.evict.WithLabelValues("api")); got != 1 {
		t.Errorf("evicted = %v, want still 1", got)
	}
}

func TestConfigErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	for _, cfg := range []ListenerConfig{{Max: 1}, {Name: "x"}, {Name: "x", Max: -1}} {
		if _, err := NewListener(inner, cfg); err == nil {
			t.Errorf("NewListener(%+v) accepted", cfg)
		}
	}
	if _, err := NewListener(nil, ListenerConfig{Name: "x", Max: 1}); err == nil {
		t.Error("NewListener(nil) accepted")
	}
	id := func(context.Context) (string, bool) { return "", false }
	for _, cfg := range []StreamsConfig{{Identify: id}, {Max: 1}} {
		if _, err := NewStreams(cfg); err == nil {
			t.Errorf("NewStreams(%+v) accepted", cfg)
		}
	}
}

// TestStreams runs the cap on a real gRPC server (health Watch streams),
// the caller named by a metadata header.
func TestStreams(t *testing.T) {
	logs := &syncBuffer{}
	metrics := NewCollector()
	s, err := NewStreams(StreamsConfig{
		Max: 2,
		Identify: func(ctx context.Context) (string, bool) {
			md, _ := metadata.FromIncomingContext(ctx)
			if v := md.Get("id"); len(v) == 1 {
				return v[0], true
			}
			return "", false
		},
		Exempt: func(_ context.Context, _, id string) bool { return id == "feed" },
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Collector: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(s.StreamInterceptor))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	watch := func(ctx context.Context, id string) codes.Code {
		t.Helper()
		if id != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "id", id)
		}
		w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Recv() // the current status, when accepted
		return status.Code(err)
	}
	for _, tc := range []struct {
		id   string
		want codes.Code
	}{
		{"a", codes.OK}, {"a", codes.OK}, {"a", codes.ResourceExhausted}, {"a", codes.ResourceExhausted},
		{"b", codes.OK}, {"feed", codes.OK}, {"feed", codes.OK}, {"feed", codes.OK}, {"", codes.OK}, {"", codes.OK}, {"", codes.OK},
	} {
		if got := watch(ctx, tc.id); got != tc.want {
			t.Errorf("stream of %q: %v, want %v", tc.id, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(metrics.refused.WithLabelValues("per_identity")); got != 2 {
		t.Errorf("refused = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "stream cap per identity reached"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	if s.Open("a") != 2 || s.Open("feed") != 0 {
		t.Errorf("open a=%d feed=%d", s.Open("a"), s.Open("feed"))
	}
	// Ending a's streams frees its slots.
	cancel()
	for s.Open("a") != 0 {
		pause()
	}
	if got := watch(context.Background(), "a"); got != codes.OK {
		t.Errorf("after its streams ended, a got %v", got)
	}
}

// pause lets the server run while a test waits on a condition (no timing
// is asserted: the test waits as long as it takes).
func pause() { time.Sleep(time.Millisecond) }
