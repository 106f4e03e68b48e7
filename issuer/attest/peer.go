package attest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthType is the AuthType of PeerInfo, and the security protocol of
// Credentials.
const AuthType = "jitgrant-peercred"

// PeerInfo identifies the process at the other end of a Unix socket, as the
// kernel reported it when that process connected. It is the AuthInfo that
// Credentials attach to a gRPC connection.
type PeerInfo struct {
	// PID is the caller's process ID, in the server's PID namespace.
	PID int
	// UID and GID are the caller's effective user and group IDs when it
	// connected.
	UID, GID int
	// StartTime is the caller's start time (field 22 of /proc/<pid>/stat,
	// in clock ticks since boot), read at the handshake. Together with PID
	// it names one process: a later process reusing the PID has another
	// start time.
	StartTime uint64
}

// AuthType returns AuthType.
func (PeerInfo) AuthType() string { return AuthType }

// PeerFromContext returns the PeerInfo of the connection a gRPC call came
// on, in a server using Credentials. It reports false if the call came on
// another kind of connection. (A test can attach one with peer.NewContext.)
func PeerFromContext(ctx context.Context) (PeerInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerInfo{}, false
	}
	info, ok := p.AuthInfo.(PeerInfo)
	return info, ok
}

// Credentials returns server-side gRPC transport credentials for a Unix
// socket listener. The handshake does no I/O on the connection: it asks the
// kernel who connected (SO_PEERCRED), reads that process's start time from
// /proc and, where the kernel offers a pidfd for the peer (SO_PEERPIDFD,
// Linux 6.5+), checks that the process that connected is still alive, so
// that the start time read belongs to it and not to a later process that
// reused its PID. The result, a PeerInfo, is available to handlers through
// PeerFromContext. Connections that are not Unix sockets, and callers whose
// PID is not visible in the server's PID namespace, are refused.
//
// The credentials provide no encryption, which a Unix socket does not need.
// ClientHandshake always fails: clients dial a Workload API socket with
// insecure credentials.
func Credentials() credentials.TransportCredentials { return peerCreds{procRoot: DefaultProcRoot} }

// peerCreds implements credentials.TransportCredentials.
type peerCreds struct {
	procRoot string
}

// ClientHandshake fails: the credentials are for servers only.
func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("attest: peer credentials are for servers; clients use insecure credentials on a Unix socket")
}

// ServerHandshake identifies the process that connected on conn.
func (c peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info, err := peerOf(conn, c.procRoot)
	if err != nil {
		return nil, nil, err
	}
	return conn, info, nil
}

// Info describes the credentials.
func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

// Clone returns a copy of the credentials.
func (c peerCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName does nothing: the credentials check no server name.
func (peerCreds) OverrideServerName(string) error { return nil }

// peerOf returns the PeerInfo of the process at the other end of conn.
func peerOf(conn net.Conn, procRoot string) (PeerInfo, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok || conn.LocalAddr() == nil || conn.LocalAddr().Network() != "unix" {
		return PeerInfo{}, fmt.Errorf("attest: connection from %v: %w", conn.RemoteAddr(), ErrNotUnix)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return PeerInfo{}, fmt.Errorf("attest: peer credentials: %w", err)
	}
	var (
		cred       *unix.Ucred
		pidfd      = -1
		cerr, perr error
	)
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil {
			pidfd, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return PeerInfo{}, fmt.Errorf("attest: SO_PEERCRED: %w", err)
	}
	switch {
	case perr == nil:
		defer unix.Close(pidfd)
	case errors.Is(perr, unix.ENOPROTOOPT), errors.Is(perr, unix.ENODATA):
		// The kernel predates SO_PEERPIDFD, or has no peer process to
		// give: rely on the start time.
		pidfd = -1
	case errors.Is(perr, unix.ESRCH), errors.Is(perr, unix.EINVAL):
		// The peer was reaped: newer kernels say ESRCH, Linux 6.5 to
		// 6.14 EINVAL (as dbus-broker reads them).
		return PeerInfo{}, fmt.Errorf("attest: pid %d: SO_PEERPIDFD: %w", cred.Pid, ErrProcessGone)
	default:
		return PeerInfo{}, fmt.Errorf("attest: pid %d: SO_PEERPIDFD: %w", cred.Pid, perr)
	}
	if cred.Pid <= 0 {
		return PeerInfo{}, errors.New("attest: SO_PEERCRED: the caller's PID is not visible in this PID namespace")
	}
	info := PeerInfo{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
	d, err := openProcDir(procRoot, info.PID)
	if err != nil {
		return PeerInfo{}, err
	}
	defer d.close()
	if info.StartTime, err = d.startTime(); err != nil {
		return PeerInfo{}, err
	}
	if pidfd >= 0 {
		// The process that connected is still alive after the start
		// time was read, so it held the PID all along: the start time is
		// its own. (Signal 0 only checks; EPERM means alive but not ours
		// to signal.)
		err := unix.PidfdSendSignal(pidfd, 0, nil, 0)
		if err != nil && !errors.Is(err, unix.EPERM) {
			return PeerInfo{}, procError(info.PID, "checking that the caller is alive (pidfd)", err)
		}
	}
	return info, nil
}
