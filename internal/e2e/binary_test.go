package e2e

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"
)

// TestBinaries builds cmd/jitd and cmd/jitctl and runs them as processes:
// jitd init, enroll and serve, then jitctl against it, then SIGTERM.
func TestBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/jitd", "./cmd/jitctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	jitdBin, jitctlBin := filepath.Join(bin, "jitd"), filepath.Join(bin, "jitctl")
	runBin := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	data, ids := filepath.Join(t.TempDir(), "data"), t.TempDir()
	runBin(jitdBin, "init", "--data-dir", data, "--trust-domain", trustDomain)
	if err := os.WriteFile(filepath.Join(data, "policy.yaml"), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	devDir := filepath.Join(ids, dev)
	runBin(jitdBin, "enroll", "--data-dir", data, "--id", personID(dev), "--out", devDir)

	// Port 0: jitd logs the address it got.
	serve := exec.CommandContext(ctx, jitdBin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--metrics-listen", "")
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	addrCh := make(chan string, 1)
	logs := &syncbuf.Buffer{}
	go func() {
		api := regexp.MustCompile(`msg="jitd: serving".* api=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
			if m := api.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-ctx.Done():
		t.Fatalf("jitd serve never said it was serving; log:\n%s", logs.String())
	}

	jitctlRun := func(args ...string) string {
		t.Helper()
		return runBin(jitctlBin, append([]string{"--server", addr, "--identity", devDir}, args...)...)
	}
	out := jitctlRun("request", "--dry-run", "--scope", mRefund+"@accounts/1", "--ttl", "10m", "--reason", "INC-1")
	if !strings.Contains(out, "outcome: needs_approval") || !strings.Contains(out, "rule: ledger-refund") {
		t.Errorf("jitctl request --dry-run:\n%s", out)
	}
	out = jitctlRun("request", "--out", filepath.Join(t.TempDir(), "g"), "--scope", mBalance, "--ttl", "5m")
	id, _, _ := strings.Cut(out, "\n")
	out = jitctlRun("list")
	if !strings.Contains(out, id) || !strings.Contains(out, "ISSUED") {
		t.Errorf("jitctl list lacks %s:\n%s", id, out)
	}
	// A usage error exits 2, as a process too.
	var exitErr *exec.ExitError
	if err := exec.CommandContext(ctx, jitctlBin, "request", "--scope", "nope").Run(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		t.Errorf("jitctl usage error: %v, want exit status 2", err)
	}
	// An issuer nobody listens for exits 5 (unreachable), as a process too.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if err := exec.CommandContext(ctx, jitctlBin, "--server", closed, "--identity", devDir, "list").Run(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 5 {
		t.Errorf("jitctl against a closed port: %v, want exit status 5", err)
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Fatalf("jitd serve after SIGTERM: %v; log:\n%s", err, logs.String())
	}
	if code := serve.ProcessState.ExitCode(); code != 0 {
		t.Errorf("jitd serve exited %d after SIGTERM", code)
	}
}
