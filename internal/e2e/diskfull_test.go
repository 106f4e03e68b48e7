//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// TestDiskFull runs a real jitd with its data directory on a small tmpfs and
// fills the disk (issue 13.3: it used to die of SIGBUS, Badger writing
// through memory maps of sparse files, and again on every restart). Expected:
// writes refused with ResourceExhausted and a message saying what to do,
// /readyz false, reads served, the process up, writes resumed by themselves
// once space is freed; and a restart on the still-full disk stays up.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test must mount a tmpfs there")
		}
		t.Skip("needs root to mount a small tmpfs (CI runs it as root)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go tool in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// 160 MiB: Badger's fully allocated logs (a 32 MiB write-ahead log
	// with jitd's settings, an 8 MiB value log), the room kept for
	// flushing memtables (33 MiB) and a 16 MiB reserve fit, and filling it
	// costs little memory.
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=160m"); err != nil {
		if errors.Is(err, syscall.EPERM) && os.Getenv("CI") != "true" {
			t.Skipf("root may not mount here (a container without CAP_SYS_ADMIN?): %v", err)
		}
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})

	bin := t.TempDir()
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/jitd", "./cmd/jitctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	jitdBin, jitctlBin := filepath.Join(bin, "jitd"), filepath.Join(bin, "jitctl")
	run := func(name string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		return string(out), err
	}
	data, devDir := filepath.Join(mnt, "data"), filepath.Join(t.TempDir(), dev)
	for _, args := range [][]string{
		{"init", "--data-dir", data, "--trust-domain", trustDomain},
		{"enroll", "--data-dir", data, "--id", personID(dev), "--out", devDir},
	} {
		if out, err := run(jitdBin, args...); err != nil {
			t.Fatalf("jitd %s: %v\n%s", args[0], err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "policy.yaml"), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}

	metrics := freePort(t)
	j := startJitd(ctx, t, jitdBin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--metrics-listen", metrics, "--disk-reserve-mib", "16")
	t.Cleanup(func() { _ = j.cmd.Process.Kill() }) // the latest jitd, if a check failed
	jitctl := func(args ...string) (string, error) {
		return run(jitctlBin, append([]string{"--server", j.addr, "--identity", devDir}, args...)...)
	}
	request := func() (string, error) {
		out, err := jitctl("request", "--out", filepath.Join(t.TempDir(), "g"), "--scope", mBalance, "--ttl", "5m")
		id, _, _ := strings.Cut(out, "\n")
		return id, err
	}
	first, err := request()
	if err != nil {
		t.Fatalf("request with space: %v\n%s", err, first)
	}

	// checkFull: writes refused with the message, readyz false, reads
	// served, the process up.
	checkFull := func(t *testing.T) {
		out, err := request()
		if err == nil {
			t.Fatalf("request on a full disk succeeded: %s", out)
		}
		out, _ = jitctl("request", "--scope", mBalance, "--ttl", "5m")
		for _, want := range []string{"ResourceExhausted", "disk nearly full at " + filepath.Join(data, "db"), "free space and jitd resumes by itself"} {
			if !strings.Contains(out, want) {
				t.Errorf("refused request says %q, lacking %q", out, want)
			}
		}
		if code, body := get(t, "http://"+metrics+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk nearly full") {
			t.Errorf("/readyz on a full disk: %d %q, want 503 naming the disk", code, body)
		}
		for _, args := range [][]string{{"list"}, {"show", first}} {
			if out, err := jitctl(args...); err != nil || !strings.Contains(out, first) {
				t.Errorf("jitctl %s on a full disk: %v\n%s", args[0], err, out)
			}
		}
		if err := j.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("jitd is gone: %v; log:\n%s", err, j.logs.String())
		}
	}
	// checkResumes: once space is freed, writes resume without a restart.
	checkResumes := func(t *testing.T) {
		waitReady(ctx, t, "http://"+metrics+"/readyz")
		if out, err := request(); err != nil {
			t.Fatalf("request after freeing space: %v\n%s", err, out)
		}
	}

	t.Run("full", func(t *testing.T) {
		fill := fillDisk(t, mnt, "fill")
		checkFull(t)
		if err := os.Remove(fill); err != nil {
			t.Fatal(err)
		}
		checkResumes(t)
	})
	t.Run("restart on a full disk", func(t *testing.T) {
		fill := fillDisk(t, mnt, "fill")
		if _, err := request(); err == nil {
			t.Fatal("request on a full disk succeeded")
		}
		j.stop(t)
		// Stopping gave back the space of Badger's logs: take it too.
		fill2 := fillDisk(t, mnt, "fill-2")
		j = startJitd(ctx, t, jitdBin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
			"--metrics-listen", metrics, "--disk-reserve-mib", "16")
		checkFull(t)
		for _, f := range []string{fill, fill2} {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		checkResumes(t)
		// The policy load that the full disk kept from the log is
		// audited once writes resume.
		for !strings.Contains(j.logs.String(), "jitd: the policy load is audited") {
			select {
			case <-ctx.Done():
				t.Fatalf("the policy load was never audited; log:\n%s", j.logs.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	t.Run("start on a full disk after a clean stop", func(t *testing.T) {
		// With space, stopping flushes the write-ahead log: Badger can
		// then open read-only on a full disk, and jitd reopens it
		// read-write, in the same process, once space is back. The API
		// keeps its address across that restart.
		j.stop(t)
		if code := j.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("jitd exited %d after SIGTERM with space; log:\n%s", code, j.logs.String())
		}
		fill := fillDisk(t, mnt, "fill")
		j = startJitd(ctx, t, jitdBin, "serve", "--data-dir", data, "--listen", freePort(t),
			"--metrics-listen", metrics, "--disk-reserve-mib", "16")
		if !strings.Contains(j.logs.String(), "opening the database read-only") {
			t.Errorf("jitd did not open read-only on a full disk; log:\n%s", j.logs.String())
		}
		checkFull(t)
		if err := os.Remove(fill); err != nil {
			t.Fatal(err)
		}
		checkResumes(t)
	})
	j.stop(t)
	if code := j.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("jitd exited %d after SIGTERM with space; log:\n%s", code, j.logs.String())
	}
}

type jitdProc struct {
	cmd  *exec.Cmd
	addr string
	logs *syncbuf.Buffer
}

// startJitd starts jitd serve and waits for the API address it logs. The
// caller stops (or kills) it.
func startJitd(ctx context.Context, t *testing.T, bin string, args ...string) *jitdProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	j := &jitdProc{cmd: cmd, logs: &syncbuf.Buffer{}}
	addrCh := make(chan string, 1)
	go func() {
		api := regexp.MustCompile(`msg="jitd: serving".* api=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			j.logs.Write([]byte(sc.Text() + "\n"))
			if m := api.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default: // serving again after reopening read-write
				}
			}
		}
	}()
	select {
	case j.addr = <-addrCh:
	case <-ctx.Done():
		t.Fatalf("jitd serve never said it was serving; log:\n%s", j.logs.String())
	}
	return j
}

// stop sends SIGTERM and checks that jitd exited by itself, not by a signal
// (a SIGBUS while closing the database on a full disk).
func (j *jitdProc) stop(t *testing.T) {
	t.Helper()
	if err := j.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = j.cmd.Wait()
	if ws, ok := j.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("jitd died of %v; log:\n%s", ws.Signal(), j.logs.String())
	}
	if strings.Contains(j.logs.String(), "SIGBUS") || strings.Contains(j.logs.String(), "fatal error") {
		t.Fatalf("jitd crashed; log:\n%s", j.logs.String())
	}
}

// fillDisk allocates every free block of the file system at dir to the file
// name and returns its path.
func fillDisk(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free > 0 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, free); err != nil {
			t.Fatalf("filling the tmpfs (%d bytes free): %v", free, err)
		}
	}
	if err := unix.Statfs(dir, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("tmpfs not full after filling: %d blocks free (%v)", st.Bavail, err)
	}
	return path
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReady polls /readyz until it answers 200: jitd's own check of the
// free space runs every second.
func waitReady(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	last := ""
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("/readyz never became ready after space was freed: %s", last)
}
