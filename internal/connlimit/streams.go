package connlimit

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamsConfig configures [Streams].
type StreamsConfig struct {
	// Max is the most streams one identity may hold open at once.
	// Required, positive.
	Max int
	// Identify returns the caller of a stream; false leaves the stream
	// uncounted (the handler refuses an unauthenticated caller itself).
	// Required.
	Identify func(ctx context.Context) (string, bool)
	// Exempt, when set, says whether a stream of method by id is exempt
	// from the cap (e.g. a verifier's revocation feed).
	Exempt func(ctx context.Context, method, id string) bool
	// Logger logs the first refusal of an identity while it is at the
	// cap. Default slog.Default().
	Logger *slog.Logger
	// Collector, when set, counts refusals.
	Collector *Collector
}

// Streams caps the concurrent streams of each identity. Its
// StreamInterceptor must run after the interceptor that authenticates the
// caller (chain it after the verifier's).
type Streams struct {
	cfg StreamsConfig

	mu   sync.Mutex
	open map[string]*identityStreams
}

type identityStreams struct {
	n      int
	logged bool // its refusal was logged since it last held no stream
}

// NewStreams returns a Streams for cfg.
func NewStreams(cfg StreamsConfig) (*Streams, error) {
	if cfg.Max <= 0 {
		return nil, errors.New("connlimit: the stream cap per identity must be positive")
	}
	if cfg.Identify == nil {
		return nil, errors.New("connlimit: streams: no Identify")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Streams{cfg: cfg, open: make(map[string]*identityStreams)}, nil
}

// StreamInterceptor refuses a stream with ResourceExhausted when its caller
// already holds Max streams; it is a grpc.StreamServerInterceptor.
func (s *Streams) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	id, ok := s.cfg.Identify(ctx)
	if !ok || (s.cfg.Exempt != nil && s.cfg.Exempt(ctx, info.FullMethod, id)) {
		return handler(srv, ss)
	}
	if !s.acquire(id, info.FullMethod) {
		return status.Errorf(codes.ResourceExhausted, "jitgrant: too many open streams for this identity (at most %d); close some and retry", s.cfg.Max)
	}
	defer s.release(id)
	return handler(srv, ss)
}

// Open returns the streams id holds.
func (s *Streams) Open(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.open[id]; o != nil {
		return o.n
	}
	return 0
}

func (s *Streams) acquire(id, method string) bool {
	s.mu.Lock()
	o := s.open[id]
	if o == nil {
		o = &identityStreams{}
		s.open[id] = o
	}
	if o.n < s.cfg.Max {
		o.n++
		s.mu.Unlock()
		return true
	}
	first := !o.logged
	o.logged = true
	s.mu.Unlock()
	s.cfg.Collector.streamRefused()
	if first {
		s.cfg.Logger.Warn("connlimit: stream cap per identity reached; refusing its new streams (logged once until it holds none)",
			"caller", id, "max", s.cfg.Max, "method", method)
	}
	return false
}

func (s *Streams) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.open[id]
	if o == nil {
		return
	}
	if o.n--; o.n <= 0 {
		delete(s.open, id) // the map holds only identities with streams
	}
}
