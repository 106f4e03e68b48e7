package verifier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
)

// TransportCredentials returns the server's transport credentials: mTLS built
// on go-spiffe's tlsconfig, client chains verified against Config.BundleSource
// at Config.Clock's time, the grant parsed once per connection. The handshake
// returns grpc-go's credentials.TLSInfo itself (not a wrapper), with SPIFFEID
// set. Use them together with the interceptors ([Verifier.ServerOptions]):
// the credentials alone authorize no method.
func (v *Verifier) TransportCredentials() credentials.TransportCredentials {
	cfg := tlsconfig.MTLSServerConfig(v.cfg.SVIDSource, v.cfg.BundleSource, v.cfg.Authorizer)
	// Replace go-spiffe's peer verification with the same one at the
	// injected clock's time, so that the handshake and the per-RPC expiry
	// check agree on what "now" is.
	cfg.VerifyPeerCertificate = v.verifyPeer
	cfg.MinVersion = tls.VersionTLS12
	return &serverCreds{TransportCredentials: credentials.NewTLS(cfg), v: v}
}

// verifyPeer verifies a client's chain against the bundles at the
// configured clock's time and authorizes its ID. A chain that verifies at its
// leaf's NotBefore, still ahead of this server's clock, is admitted: every
// RPC on it is refused until then with a status that names the clock skew,
// where a failed handshake would tell the client nothing.
func (v *Verifier) verifyPeer(raw [][]byte, _ [][]*x509.Certificate) error {
	now := v.cfg.Clock()
	id, chains, err := x509svid.ParseAndVerify(raw, v.cfg.BundleSource, x509svid.WithTime(now))
	if err != nil {
		if len(raw) == 0 {
			return err
		}
		leaf, perr := x509.ParseCertificate(raw[0])
		if perr != nil || !now.Before(leaf.NotBefore) {
			return err
		}
		if id, chains, err = x509svid.ParseAndVerify(raw, v.cfg.BundleSource, x509svid.WithTime(leaf.NotBefore)); err != nil {
			return err
		}
	}
	return v.cfg.Authorizer(id, chains)
}

// serverCreds wraps grpc-go's TLS credentials: the handshake is theirs, and
// the AuthInfo they return is passed on untouched.
type serverCreds struct {
	credentials.TransportCredentials
	v *Verifier
}

var errServerOnly = errors.New("verifier: these transport credentials are for servers; use ClientCredentials to dial")

func (c *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errServerOnly
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.v.metrics.handshakesFail.Add(1)
		c.v.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, "jitgrant: handshake failed",
			slog.String("remote", raw.RemoteAddr().String()), slog.String("error", err.Error()))
		return nil, nil, err
	}
	info, ok := ai.(credentials.TLSInfo)
	var leaf *x509.Certificate
	if !ok {
		err = errors.New("verifier: handshake: not a TLS connection")
	} else {
		leaf, err = c.v.admit(&info)
	}
	if err != nil {
		conn.Close()
		c.v.metrics.handshakesFail.Add(1)
		c.v.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, "jitgrant: handshake refused",
			slog.String("remote", raw.RemoteAddr().String()), slog.String("error", err.Error()))
		return nil, nil, err
	}
	c.v.metrics.handshakesOK.Add(1)
	tc := &trackedConn{Conn: conn, release: func() { c.v.release(leaf) }}
	if sc, ok := conn.(syscall.Conn); ok {
		return &trackedSyscallConn{trackedConn: tc, sc: sc}, ai, nil
	}
	return tc, ai, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), v: c.v}
}

// trackedConn forgets its peer in the verifier's cache when it closes.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// trackedSyscallConn keeps the syscall.Conn of the connection it wraps
// visible, as grpc-go's own TLS credentials do.
type trackedSyscallConn struct {
	*trackedConn
	sc syscall.Conn
}

func (c *trackedSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
