//go:build linux

package attest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer/attest"
)

// selfPeer returns the PeerInfo of the test process, from a real handshake.
func selfPeer(t *testing.T) attest.PeerInfo {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, info, err := attest.Credentials().ServerHandshake(acceptDialed(t, lis, "unix"))
	if err != nil {
		t.Fatal(err)
	}
	return info.(attest.PeerInfo)
}

// nameSelectors returns the unix:user and unix:group selectors the Attestor
// should find for uid and gid on this host.
func nameSelectors(uid, gid int) []attest.Selector {
	var sels []attest.Selector
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		sels = append(sels, attest.Selector{Type: attest.TypeUser, Value: u.Username})
	}
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		sels = append(sels, attest.Selector{Type: attest.TypeGroup, Value: g.Name})
	}
	return sels
}

func newAttestor(t *testing.T, cfg attest.Config) *attest.Attestor {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	a, err := attest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAttestSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatal(err)
	}
	p := selfPeer(t)
	got, err := newAttestor(t, attest.Config{}).Attest(t.Context(), p)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	want := attest.NewSelectors(append(nameSelectors(os.Getuid(), os.Getgid()),
		attest.Selector{Type: attest.TypeUID, Value: strconv.Itoa(os.Getuid())},
		attest.Selector{Type: attest.TypeGID, Value: strconv.Itoa(os.Getgid())},
		attest.Selector{Type: attest.TypePath, Value: exe},
		attest.Selector{Type: attest.TypeSHA256, Value: fileSHA256(t, exe)},
	)...)
	if !maps.Equal(got, want) {
		t.Errorf("Attest = %v\nwant     %v", got, want)
	}
}

// The fake processes live in a fake /proc under t.TempDir().
const fakePID = 4242

// statLine returns a /proc/<pid>/stat line with the given command name and
// start time (field 22).
func statLine(comm string, start uint64) string {
	return fmt.Sprintf("%d (%s) S%s %d 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", fakePID, comm, strings.Repeat(" 1", 18), start)
}

// fakeProc makes root/<fakePID> with a stat file (unless stat is "") and an
// exe link to exe (unless exe is ""), and returns root.
func fakeProc(t *testing.T, stat, exe string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(fakePID))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if stat != "" {
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if exe != "" {
		if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writeExe writes an "executable" with the given content and returns its
// path and hex SHA-256.
func writeExe(t *testing.T, content string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return path, hex.EncodeToString(sum[:])
}

func TestAttestFakeProc(t *testing.T) {
	exe, sum := writeExe(t, "#!/bin/true\n")
	uid, gid := os.Getuid(), os.Getgid()
	okPeer := attest.PeerInfo{PID: fakePID, UID: uid, GID: gid, StartTime: 100}
	tests := []struct {
		name     string
		stat     string // "" for none
		exe      string // exe link target; "" for no link
		peer     attest.PeerInfo
		maxSize  int64
		wantErr  error  // sentinel, or nil
		wantText string // substring of the error; "" with wantErr nil means success
	}{
		{name: "ok", stat: statLine("app", 100), exe: exe, peer: okPeer},
		{name: "command name with spaces and parentheses", stat: statLine("a) (b) S 7", 100), exe: exe, peer: okPeer},
		{name: "start time differs from the handshake", stat: statLine("app", 101), exe: exe, peer: okPeer, wantErr: attest.ErrPIDReused},
		{name: "no such process", stat: statLine("app", 100), exe: exe, peer: attest.PeerInfo{PID: fakePID + 1, StartTime: 100}, wantErr: attest.ErrProcessGone},
		{name: "pid zero", stat: statLine("app", 100), exe: exe, peer: attest.PeerInfo{}, wantText: "invalid pid 0"},
		{name: "negative uid", stat: statLine("app", 100), exe: exe, peer: attest.PeerInfo{PID: fakePID, UID: -1}, wantText: "invalid uid"},
		{name: "no stat", exe: exe, peer: okPeer, wantErr: attest.ErrProcessGone},
		{name: "stat without command name end", stat: "4242 (app S 1 1\n", exe: exe, peer: okPeer, wantText: "no ')'"},
		{name: "stat too short", stat: "4242 (app) S 1 1 1\n", exe: exe, peer: okPeer, wantText: "fields after the command name"},
		{name: "start time not a number", stat: strings.Replace(statLine("app", 100), " 100 ", " x ", 1), exe: exe, peer: okPeer, wantText: "start time"},
		{name: "stat too long", stat: strings.Repeat("x", 5000), exe: exe, peer: okPeer, wantText: "longer than"},
		{name: "no exe link", stat: statLine("app", 100), peer: okPeer, wantErr: attest.ErrProcessGone},
		{name: "executable gone", stat: statLine("app", 100), exe: exe + ".missing", peer: okPeer, wantErr: attest.ErrProcessGone},
		{name: "executable is a directory", stat: statLine("app", 100), exe: t.TempDir(), peer: okPeer, wantText: "not a regular file"},
		{name: "executable too large", stat: statLine("app", 100), exe: exe, peer: okPeer, maxSize: 5, wantText: "exceeds the limit of 5 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeProc(t, tt.stat, tt.exe)
			a := newAttestor(t, attest.Config{ProcRoot: root, MaxExecutableSize: tt.maxSize})
			got, err := a.Attest(t.Context(), tt.peer)
			if tt.wantErr == nil && tt.wantText == "" {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				want := attest.NewSelectors(append(nameSelectors(uid, gid),
					attest.Selector{Type: attest.TypeUID, Value: strconv.Itoa(uid)},
					attest.Selector{Type: attest.TypeGID, Value: strconv.Itoa(gid)},
					attest.Selector{Type: attest.TypePath, Value: exe},
					attest.Selector{Type: attest.TypeSHA256, Value: sum},
				)...)
				if !maps.Equal(got, want) {
					t.Errorf("Attest = %v\nwant     %v", got, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Attest = %v, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.HasPrefix(err.Error(), "attest: ") {
				t.Errorf("error %q does not start with \"attest: \" and contain %q", err, tt.wantText)
			}
		})
	}
}

// TestAttestPIDReusedDuringAttest changes the fake stat file while Attest
// reads the executable, as if the caller exited and a new process took its
// PID meanwhile. The moment comes from the clock, which Attest reads while
// hashing, between its two checks of the start time.
func TestAttestPIDReusedDuringAttest(t *testing.T) {
	exe, _ := writeExe(t, "app")
	root := fakeProc(t, statLine("app", 100), exe)
	stat := filepath.Join(root, strconv.Itoa(fakePID), "stat")
	var swapErr error
	var swapped atomic.Bool
	clock := func() time.Time {
		if !swapped.Swap(true) {
			swapErr = os.WriteFile(stat, []byte(statLine("app", 200)), 0o644)
		}
		return time.Now()
	}
	a := newAttestor(t, attest.Config{ProcRoot: root, Clock: clock})
	_, err := a.Attest(t.Context(), attest.PeerInfo{PID: fakePID, StartTime: 100})
	if swapErr != nil || !swapped.Load() {
		t.Fatalf("the clock was not read during Attest, or failed to change stat: %v", swapErr)
	}
	if !errors.Is(err, attest.ErrPIDReused) {
		t.Fatalf("Attest error = %v, want %v", err, attest.ErrPIDReused)
	}
	if !strings.Contains(err.Error(), "start time is 200, was 100") {
		t.Errorf("error %q does not name the start times", err)
	}
}

// tickingClock returns a clock that moves forward by step at every reading.
func tickingClock(step time.Duration) func() time.Time {
	var n atomic.Int64
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * step) }
}

func TestAttestHashBounds(t *testing.T) {
	exe, _ := writeExe(t, "app")
	root := fakeProc(t, statLine("app", 1), exe)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		cfg      attest.Config
		wantErr  error
		wantText string
	}{
		{name: "time", ctx: t.Context(), cfg: attest.Config{ProcRoot: root, HashTimeout: time.Minute, Clock: tickingClock(time.Hour)}, wantText: "took longer than 1m0s"},
		{name: "context", ctx: canceled, cfg: attest.Config{ProcRoot: root}, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newAttestor(t, tt.cfg).Attest(tt.ctx, attest.PeerInfo{PID: fakePID, StartTime: 1})
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Attest error = %v, want %v containing %q", err, tt.wantErr, tt.wantText)
			}
		})
	}
}

// TestAttestHashCache counts the hashing of executables in the debug log.
func TestAttestHashCache(t *testing.T) {
	exe, _ := writeExe(t, "version 1")
	root := fakeProc(t, statLine("app", 1), exe)
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		now        time.Time
		wantHashes int // of three attestations of the same file
	}{
		{name: "old file is cached", now: fi.ModTime().Add(time.Hour), wantHashes: 1},
		// A file modified just now could change again without its key
		// changing, within the timestamp granularity.
		{name: "racy file is not cached", now: fi.ModTime(), wantHashes: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := newAttestor(t, attest.Config{
				ProcRoot: root,
				Clock:    func() time.Time { return tt.now },
				Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			for range 3 {
				if _, err := a.Attest(t.Context(), attest.PeerInfo{PID: fakePID, StartTime: 1}); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Count(logs.String(), "hashed executable"); got != tt.wantHashes {
				t.Errorf("hashed %d times, want %d; log:\n%s", got, tt.wantHashes, logs.String())
			}
		})
	}
}

// TestAttestHashCacheInvalidated checks that a changed file is hashed again.
func TestAttestHashCacheInvalidated(t *testing.T) {
	exe, _ := writeExe(t, "version 1")
	root := fakeProc(t, statLine("app", 1), exe)
	a := newAttestor(t, attest.Config{ProcRoot: root, Clock: func() time.Time { return time.Now().Add(time.Hour) }})
	for _, content := range []string{"version 1", "version 2, longer"} {
		if err := os.WriteFile(exe, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		got, err := a.Attest(t.Context(), attest.PeerInfo{PID: fakePID, StartTime: 1})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		if want := (attest.Selector{Type: attest.TypeSHA256, Value: hex.EncodeToString(sum[:])}); !got.Has(want) {
			t.Errorf("after writing %q: selectors %v lack %v", content, got, want)
		}
	}
}

func TestAttestUnnamedIDs(t *testing.T) {
	const id = 2147480000 // an ID with no name on any sane host
	if _, err := user.LookupId(strconv.Itoa(id)); err == nil {
		t.Skipf("uid %d has a name here", id)
	}
	exe, _ := writeExe(t, "app")
	root := fakeProc(t, statLine("app", 1), exe)
	got, err := newAttestor(t, attest.Config{ProcRoot: root}).Attest(t.Context(), attest.PeerInfo{PID: fakePID, UID: id, GID: id, StartTime: 1})
	if err != nil {
		t.Fatal(err)
	}
	for sel := range got {
		if sel.Type == attest.TypeUser || sel.Type == attest.TypeGroup {
			t.Errorf("unexpected %v", sel)
		}
	}
	if !got.Has(attest.Selector{Type: attest.TypeUID, Value: strconv.Itoa(id)}) {
		t.Errorf("selectors %v lack the uid", got)
	}
}

func TestNewRejectsNegativeConfig(t *testing.T) {
	for _, cfg := range []attest.Config{{MaxExecutableSize: -1}, {HashTimeout: -1}, {NameTTL: -1}} {
		if _, err := attest.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
