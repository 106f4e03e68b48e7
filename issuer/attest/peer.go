package attest

import (
	"context"
	"errors"
	"net"

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
