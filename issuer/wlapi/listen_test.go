package wlapi_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jitgrant/jitgrant/issuer/wlapi"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")

	// A stale socket nobody listens on is replaced.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	lis, err := wlapi.Listen(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o777 {
		t.Errorf("socket mode %v, want a socket with 0777", fi.Mode())
	}

	// A live socket is not taken over.
	if _, err := wlapi.Listen(path); err == nil {
		t.Error("Listen took over a socket in use")
	}
	lis.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}

	// Anything but a socket is left alone.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := wlapi.Listen(file); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("the file changed: %q, %v", b, err)
	}
	if _, err := wlapi.Listen(filepath.Join(dir, "missing", "s.sock")); err == nil {
		t.Error("Listen made a missing directory")
	}
}
