package wlapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header is the metadata key every Workload API call must carry with the
// value "true".
const Header = "workload.spiffe.io"

// Config configures a Server. Every field but Clock, Logger and Jitter is
// required.
type Config struct {
	// CA mints identity X.509-SVIDs; its bundle is the X.509 bundle sent.
	CA *ca.CA
	// JWT mints JWT-SVIDs; its bundle is the JWT bundle sent and the one
	// ValidateJWTSVID checks against.
	JWT *jwtsvid.Signer
	// Issuer supplies the grants of a workload and their changes, and mints
	// grant X.509-SVIDs (Issuer.Fetch, which audits each).
	Issuer *issuer.Issuer
	// Attestor finds the selectors of a caller.
	Attestor *attest.Attestor
	// Entries returns the registration entries in force. It is called for
	// every attestation, so that reloaded entries apply at once to new
	// calls and, after Server.Refresh, to open streams.
	Entries func() attest.Entries
	// Clock is the time source. Default time.Now.
	Clock func() time.Time
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Jitter returns how much earlier than half of its life d an identity
	// SVID is rotated, so that SVIDs minted together do not all rotate
	// together. Default: a random duration in [0, d/10].
	Jitter func(d time.Duration) time.Duration
	// ServerOptions are added to the gRPC server's own (e.g. a handshake
	// timeout and keepalive limits).
	ServerOptions []grpc.ServerOption
}

// Server serves the SPIFFE Workload API. It is safe for concurrent use.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	cfg    Config
	grpc   *grpc.Server
	bundle []byte // DER certificates of the X.509 bundle, concatenated
	jwks   []byte // the JWT bundle as a JWK Set
	jwtb   *jwtbundle.Bundle
	cache  *cache
	open   *openStreams

	mu   sync.Mutex
	wake chan struct{} // closed and replaced by Refresh
	done chan struct{} // closed by Stop and GracefulStop
	stop sync.Once
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.CA == nil:
		return nil, errors.New("wlapi: Config.CA is required")
	case cfg.JWT == nil:
		return nil, errors.New("wlapi: Config.JWT is required")
	case cfg.Issuer == nil:
		return nil, errors.New("wlapi: Config.Issuer is required")
	case cfg.Attestor == nil:
		return nil, errors.New("wlapi: Config.Attestor is required")
	case cfg.Entries == nil:
		return nil, errors.New("wlapi: Config.Entries is required")
	case cfg.JWT.TrustDomain() != cfg.CA.TrustDomain():
		return nil, fmt.Errorf("wlapi: the JWT signer's trust domain %s is not the CA's, %s", cfg.JWT.TrustDomain(), cfg.CA.TrustDomain())
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Jitter == nil {
		cfg.Jitter = defaultJitter
	}
	jwtb := cfg.JWT.Bundle()
	jwks, err := jwtsvid.MarshalJWKS(jwtb)
	if err != nil {
		return nil, fmt.Errorf("wlapi: JWT bundle: %w", err)
	}
	s := &Server{cfg: cfg, jwks: jwks, jwtb: jwtb, cache: newCache(), wake: make(chan struct{}), done: make(chan struct{})}
	for _, c := range cfg.CA.Bundle().X509Authorities() {
		s.bundle = append(s.bundle, c.Raw...)
	}
	s.open = newOpenStreams()
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(attest.Credentials()), grpc.StreamInterceptor(s.open.count)}, cfg.ServerOptions...)...)
	workload.RegisterSpiffeWorkloadAPIServer(s.grpc, s)
	return s, nil
}

func defaultJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d/10 + 1)
}

// Serve accepts Workload API connections on lis, normally from Listen,
// until Stop or GracefulStop. It returns nil after a stop.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("wlapi: %w", err)
	}
	return nil
}

// Stop ends every stream and closes every connection and listener at once.
func (s *Server) Stop() {
	s.stop.Do(func() { close(s.done) })
	s.grpc.Stop()
}

// GracefulStop ends every stream (they have no natural end), lets unary
// calls finish, and then closes the listeners.
func (s *Server) GracefulStop() {
	s.stop.Do(func() { close(s.done) })
	s.grpc.GracefulStop()
}

// Refresh makes every open FetchX509SVID stream attest its caller again and
// rebuild its set at the clock's time, sending a message if the set changed.
// Call it after reloading registration entries; tests call it after moving
// a fake clock.
func (s *Server) Refresh() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) wakeChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// identify checks the security header and attests the caller of ctx.
func (s *Server) identify(ctx context.Context) (attest.PeerInfo, []attest.Entry, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(Header); len(v) != 1 || v[0] != "true" {
		return attest.PeerInfo{}, nil, status.Error(codes.InvalidArgument, "security header missing from request")
	}
	p, ok := attest.PeerFromContext(ctx)
	if !ok {
		s.cfg.Logger.Warn("wlapi: call on a connection without peer credentials")
		return attest.PeerInfo{}, nil, status.Error(codes.PermissionDenied, "wlapi: caller could not be attested")
	}
	es, err := s.attest(ctx, p)
	return p, es, err
}

// attest returns the entries that match the caller p now, or a
// PermissionDenied status when there are none.
func (s *Server) attest(ctx context.Context, p attest.PeerInfo) ([]attest.Entry, error) {
	sels, err := s.cfg.Attestor.Attest(ctx, p)
	if err != nil {
		s.cfg.Logger.Info("wlapi: attestation failed", "pid", p.PID, "uid", p.UID, "err", err)
		return nil, status.Error(codes.PermissionDenied, "wlapi: caller could not be attested")
	}
	es := s.cfg.Entries().Match(sels)
	if len(es) == 0 {
		s.cfg.Logger.Info("wlapi: no registration entry matches the caller", "pid", p.PID, "uid", p.UID)
		return nil, status.Error(codes.PermissionDenied, "wlapi: no identity issued")
	}
	return es, nil
}

// alive checks, just before a response is sent, that the caller still runs.
func (s *Server) alive(p attest.PeerInfo) error {
	if err := s.cfg.Attestor.Alive(p); err != nil {
		s.cfg.Logger.Info("wlapi: caller gone before the response", "pid", p.PID, "err", err)
		return status.Error(codes.PermissionDenied, "wlapi: caller process is gone")
	}
	return nil
}

// waitDone blocks a bundle stream until its call or the server ends.
func (s *Server) waitDone(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.done:
		return status.Error(codes.Unavailable, "wlapi: server shutting down")
	}
}

// Listen listens on a Unix socket at path for Serve. The parent directory
// must exist. A file already at path is replaced only if it is a socket that
// nobody listens on (one left by a previous run); anything else is an error.
// The socket file gets mode 0777, as SPIRE's agent does: any local process
// may connect, and access control is attestation, which gives a caller that
// no registration entry matches nothing. Restrict the parent directory's
// mode to narrow who may connect at all. Closing the listener removes the
// socket file.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("wlapi: socket directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("wlapi: socket directory %s is not a directory", dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("wlapi: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("wlapi: %s is in use by another server", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("wlapi: removing stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	lis.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o777); err != nil {
		lis.Close()
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	return lis, nil
}
