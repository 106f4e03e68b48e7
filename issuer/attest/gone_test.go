//go:build linux

package attest_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jitgrant/jitgrant/issuer/attest"
	"golang.org/x/sys/unix"
)

// startZombie starts the test binary in "exit" mode and waits, without
// reaping it, until it has exited: it is then a zombie, which still holds
// its PID. It returns the command, to reap with Wait.
func startZombie(t *testing.T) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = childEnv("exit", "")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Wait() })
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			return cmd
		}
		if !errors.Is(err, unix.EINTR) {
			t.Fatalf("waitid: %v", err)
		}
	}
}

func TestAttestProcessGone(t *testing.T) {
	a := newAttestor(t, attest.Config{})
	cmd := startZombie(t)
	pid := cmd.Process.Pid
	p := attest.PeerInfo{PID: pid, UID: os.Getuid(), GID: os.Getgid(), StartTime: procStartTime(t, pid)}

	// A zombie has exited: it has no executable any more.
	if _, err := a.Attest(t.Context(), p); !errors.Is(err, attest.ErrProcessGone) {
		t.Errorf("Attest of a zombie: error = %v, want %v", err, attest.ErrProcessGone)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// Once reaped, its PID is free; were it reused already, the start
	// time would differ.
	for name, err := range map[string]error{
		"Attest": func() error { _, err := a.Attest(t.Context(), p); return err }(),
		"Alive":  a.Alive(p),
	} {
		if !errors.Is(err, attest.ErrProcessGone) && !errors.Is(err, attest.ErrPIDReused) {
			t.Errorf("%s of a reaped process: error = %v, want %v or %v", name, err, attest.ErrProcessGone, attest.ErrPIDReused)
		}
	}
}

func TestAlive(t *testing.T) {
	a := newAttestor(t, attest.Config{})
	self := selfPeer(t)
	if err := a.Alive(self); err != nil {
		t.Errorf("Alive(self) = %v", err)
	}
	other := self
	other.StartTime++
	if err := a.Alive(other); !errors.Is(err, attest.ErrPIDReused) {
		t.Errorf("Alive with another start time = %v, want %v", err, attest.ErrPIDReused)
	}
}

// TestHandshakeCallerGone has a child connect and exit before the server
// accepts: the handshake must refuse a caller it can no longer identify.
func TestHandshakeCallerGone(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = childEnv("connect", sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil { // reaped when Run returns
		t.Fatal(err)
	}
	conn, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, info, err := attest.Credentials().ServerHandshake(conn)
	if !errors.Is(err, attest.ErrProcessGone) {
		t.Fatalf("ServerHandshake = %v, %v; want %v", info, err, attest.ErrProcessGone)
	}
	t.Logf("refused: %v", err)
}
