//go:build linux

package attest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/issuer/attest"
)

// copyExecutable copies the test binary to dir/name and returns the copy's
// path with symlinks resolved, as the kernel will report it.
func copyExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, name)
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runChild runs the executable at path in "call" mode against the socket
// and returns its PID and the status code it got.
func runChild(t *testing.T, path, sock string) (int, string) {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = childEnv("call", sock)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", path, err)
	}
	return cmd.Process.Pid, strings.TrimSpace(string(out))
}

// TestChildProcesses runs copies of the test binary as children that call
// the server, and checks which identity each gets.
func TestChildProcesses(t *testing.T) {
	ts, sock := startServer(t)
	dir := t.TempDir()
	// Three copies of the same bytes at different paths. They are written
	// before any child starts, so no fork can hold one open for writing.
	a := copyExecutable(t, dir, "child-a")
	b := copyExecutable(t, dir, "child-b")
	c := copyExecutable(t, dir, "child-c")
	sum := fileSHA256(t, a)
	uid := strconv.Itoa(os.Getuid())
	otherUID := strconv.Itoa(os.Getuid() + 1)

	byPath := []attest.EntryConfig{
		{ID: "spiffe://example.org/a", Selectors: []string{"unix:path:" + a}, TTL: "1h"},
		{ID: "spiffe://example.org/b", Selectors: []string{"unix:path:" + b, "unix:uid:" + uid}, TTL: "1h"},
	}
	byHash := []attest.EntryConfig{
		{ID: "spiffe://example.org/same-bytes", Selectors: []string{"unix:sha256:" + sum}, TTL: "1h"},
	}
	tests := []struct {
		name    string
		entries []attest.EntryConfig
		exe     string
		wantIDs []string // nil: the caller is refused
	}{
		{name: "path a", entries: byPath, exe: a, wantIDs: []string{"spiffe://example.org/a"}},
		{name: "path b", entries: byPath, exe: b, wantIDs: []string{"spiffe://example.org/b"}},
		{name: "no entry for c", entries: byPath, exe: c},
		{name: "hash matches a", entries: byHash, exe: a, wantIDs: []string{"spiffe://example.org/same-bytes"}},
		{name: "hash matches b", entries: byHash, exe: b, wantIDs: []string{"spiffe://example.org/same-bytes"}},
		{
			name:    "all selectors must match",
			entries: []attest.EntryConfig{{ID: "spiffe://example.org/a", Selectors: []string{"unix:path:" + a, "unix:uid:" + otherUID}, TTL: "1h"}},
			exe:     a,
		},
		{
			name:    "several entries, in order",
			entries: append(slices.Clone(byHash), byPath...),
			exe:     b,
			wantIDs: []string{"spiffe://example.org/same-bytes", "spiffe://example.org/b"},
		},
		{name: "no entries", entries: nil, exe: a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts.setEntries(t, tt.entries)
			pid, code := runChild(t, tt.exe, sock)
			got := ts.call(t, pid)
			if got.err != nil {
				t.Fatalf("Attest of child %d: %v", pid, got.err)
			}
			if got.peer.PID != pid || got.peer.UID != os.Getuid() || got.peer.GID != os.Getgid() {
				t.Errorf("peer = %+v, want pid %d uid %d gid %d", got.peer, pid, os.Getuid(), os.Getgid())
			}
			wantSels := []attest.Selector{{Type: attest.TypePath, Value: tt.exe}, {Type: attest.TypeSHA256, Value: sum}}
			if !got.sels.HasAll(wantSels) {
				t.Errorf("selectors %v lack %v", got.sels, wantSels)
			}
			if !slices.Equal(got.ids, tt.wantIDs) {
				t.Errorf("identities = %v, want %v", got.ids, tt.wantIDs)
			}
			wantCode := "OK"
			if tt.wantIDs == nil {
				wantCode = "PermissionDenied"
			}
			if code != wantCode {
				t.Errorf("child got %q, want %q", code, wantCode)
			}
		})
	}
}
