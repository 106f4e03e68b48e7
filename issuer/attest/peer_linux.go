package attest

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

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
