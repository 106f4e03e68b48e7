package jitd

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/jitgrant/jitgrant/internal/connlimit"
	"github.com/jitgrant/jitgrant/policy"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what callers may hold of jitd: connections, streams and
// time. Zero fields take the defaults ([DefaultLimits]); the
// configuration file sets them under `limits:`.
type Limits struct {
	// StreamsPerIdentity is the most streams (WatchRequests,
	// ExportAudit, health Watch, ...) one SPIFFE ID may hold open on the
	// API at once; more are refused with ResourceExhausted. A caller with
	// the watch_revocations permission is exempt for WatchRevocations.
	StreamsPerIdentity int `yaml:"streams_per_identity"`
	// StreamsPerConnection is the most concurrent streams (calls) one
	// HTTP/2 connection to the API may carry; a client past it waits.
	StreamsPerConnection int `yaml:"streams_per_connection"`
	// MaxConnections is the most connections the API listener holds open;
	// at the cap, new connections wait in the kernel's backlog.
	MaxConnections int `yaml:"max_connections"`
	// WorkloadMaxConnections is the same for the Workload API socket.
	WorkloadMaxConnections int `yaml:"workload_max_connections"`
	// MetricsMaxConnections is the same for the metrics listener.
	MetricsMaxConnections int `yaml:"metrics_max_connections"`
	// HandshakeTimeout is how long a new connection may take to complete
	// its TLS handshake and HTTP/2 preface (the API), its HTTP/2 preface
	// (the Workload API) or its request headers (metrics) before it is
	// closed.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes a connection that has carried no call for this
	// long (a client reconnects when it needs to). Metrics keep-alive
	// connections use it too.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// KeepaliveInterval is how long a connection may be silent before
	// jitd pings it; a peer that does not answer within KeepaliveTimeout
	// is disconnected.
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
	// KeepaliveTimeout is how long jitd waits for the answer to a ping.
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// KeepaliveMinTime is the shortest interval between a client's pings
	// that jitd tolerates; a client pinging more often is disconnected
	// (GOAWAY too_many_pings).
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
}

// DefaultLimits returns the limits jitd applies to fields left zero.
func DefaultLimits() Limits {
	return Limits{
		StreamsPerIdentity:     32,
		StreamsPerConnection:   256,
		MaxConnections:         4096,
		WorkloadMaxConnections: 1024,
		MetricsMaxConnections:  64,
		HandshakeTimeout:       10 * time.Second,
		IdleTimeout:            15 * time.Minute,
		KeepaliveInterval:      2 * time.Minute,
		KeepaliveTimeout:       20 * time.Second,
		KeepaliveMinTime:       10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultLimits and refuses negative
// ones, naming the key.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	ints := []struct {
		key      string
		v        *int
		def, max int
	}{
		{"streams_per_identity", &l.StreamsPerIdentity, d.StreamsPerIdentity, 1 << 20},
		{"streams_per_connection", &l.StreamsPerConnection, d.StreamsPerConnection, 1 << 20},
		{"max_connections", &l.MaxConnections, d.MaxConnections, 1 << 24},
		{"workload_max_connections", &l.WorkloadMaxConnections, d.WorkloadMaxConnections, 1 << 24},
		{"metrics_max_connections", &l.MetricsMaxConnections, d.MetricsMaxConnections, 1 << 24},
	}
	for _, f := range ints {
		switch {
		case *f.v < 0 || *f.v > f.max:
			return l, fmt.Errorf("jitd: limits.%s: %d is out of range (1 to %d; 0 or unset for the default %d)", f.key, *f.v, f.max, f.def)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	durs := []struct {
		key string
		v   *time.Duration
		def time.Duration
		min time.Duration
	}{
		{"handshake_timeout", &l.HandshakeTimeout, d.HandshakeTimeout, time.Millisecond},
		{"idle_timeout", &l.IdleTimeout, d.IdleTimeout, time.Second},
		{"keepalive_interval", &l.KeepaliveInterval, d.KeepaliveInterval, time.Second},
		{"keepalive_timeout", &l.KeepaliveTimeout, d.KeepaliveTimeout, time.Second},
		{"keepalive_min_time", &l.KeepaliveMinTime, d.KeepaliveMinTime, time.Second},
	}
	for _, f := range durs {
		switch {
		case *f.v < 0 || (*f.v > 0 && *f.v < f.min):
			return l, fmt.Errorf("jitd: limits.%s: %v is too short (at least %v; 0 or unset for the default %v)", f.key, *f.v, f.min, f.def)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	return l, nil
}

// limiter holds the running limits of a Server.
type limiter struct {
	cfg     Limits
	metrics *connlimit.Collector
	streams *connlimit.Streams
}

// newLimiter builds the per-identity stream cap of the API: a caller with
// the watch_revocations permission is exempt for WatchRevocations, so that
// a verifier's feed is never refused.
func (s *Server) newLimiter(policies *policy.Store) (*limiter, error) {
	l, err := s.cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	lim := &limiter{cfg: l, metrics: connlimit.NewCollector()}
	lim.streams, err = connlimit.NewStreams(connlimit.StreamsConfig{
		Max: l.StreamsPerIdentity,
		Identify: func(ctx context.Context) (string, bool) {
			id, ok := verifier.PeerIDFromContext(ctx)
			return id.String(), ok
		},
		Exempt: func(ctx context.Context, method, id string) bool {
			if method != pb.Issuer_WatchRevocations_FullMethodName {
				return false
			}
			pid, ok := verifier.PeerIDFromContext(ctx)
			return ok && policies.Current().Allowed(policy.WatchRevocations, pid)
		},
		Logger: s.cfg.Logger, Collector: lim.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	return lim, nil
}

// apiOptions are the API server's options for the limits. They go after
// the verifier's, whose interceptor identifies the caller first.
func (lim *limiter) apiOptions() []grpc.ServerOption {
	return append(lim.connOptions(),
		grpc.MaxConcurrentStreams(uint32(lim.cfg.StreamsPerConnection)),
		grpc.ChainStreamInterceptor(lim.streams.StreamInterceptor),
	)
}

// connOptions are the handshake and keepalive options every gRPC server
// of jitd (the API and the Workload API) takes.
func (lim *limiter) connOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(lim.cfg.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: lim.cfg.IdleTimeout,
			Time:              lim.cfg.KeepaliveInterval,
			Timeout:           lim.cfg.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             lim.cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	}
}

// listen wraps l with the connection cap max under name. At the cap, a
// gRPC listener closes the oldest connection still in its handshake; the
// metrics listener waits for one to close.
func (lim *limiter) listen(s *Server, l net.Listener, name string, max int) (net.Listener, error) {
	cl, err := connlimit.NewListener(l, connlimit.ListenerConfig{
		Name: name, Max: max, Logger: s.cfg.Logger, Collector: lim.metrics, EvictHandshaking: name != "metrics",
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("jitd: %w", err)
	}
	return cl, nil
}
