//go:build !linux

package attest

import "net"

// peerOf fails: see errUnsupported.
func peerOf(net.Conn, string) (PeerInfo, error) { return PeerInfo{}, errUnsupported }
