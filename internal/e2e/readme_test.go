package e2e

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEQuickstart runs the README's quickstart as written, so that it
// cannot rot: every shell block of the section in order (the build step is
// the test's own, jitd serve runs in the background on free ports, the
// jitbench runs are left to BENCHMARKS.md), with the policy block written
// where the README says.
func TestREADMEQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Setting up for real")
	if start < 0 {
		t.Fatal(`README has no "Setting up for real" section`)
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	blocks := regexp.MustCompile("(?s)```(sh|yaml)\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d blocks in the Quickstart", len(blocks))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(work, "bin")+"/", "./cmd/jitd", "./cmd/jitctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	api, metrics := freeAddr(t), freeAddr(t)
	fix := strings.NewReplacer("127.0.0.1:8443", api, "127.0.0.1:9090", metrics)

	var serve *exec.Cmd
	var outputs strings.Builder
	for _, b := range blocks {
		kind, body := b[1], fix.Replace(b[2])
		switch {
		case kind == "yaml":
			if err := os.WriteFile(filepath.Join(work, "data", "policy.yaml"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(body, "go build"):
			// built above
		case strings.HasPrefix(body, "go run ./cmd/jitbench"):
			// benchmarks, run by hand (BENCHMARKS.md)
		case strings.HasPrefix(body, "bin/jitd serve"):
			serve = exec.CommandContext(ctx, "bash", "-c", "exec "+strings.TrimSpace(body))
			serve.Dir = work
			stderr, err := serve.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := serve.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if strings.Contains(sc.Text(), `msg="jitd: serving"`) {
						close(ready)
					}
				}
			}()
			select {
			case <-ready:
			case <-ctx.Done():
				t.Fatal("jitd serve from the README never started")
			}
		default:
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", body)
			cmd.Dir = work
			out, err := cmd.CombinedOutput()
			outputs.Write(out)
			if err != nil {
				t.Fatalf("README block failed: %v\n--- block\n%s--- output\n%s", err, body, out)
			}
		}
	}
	if serve == nil {
		t.Fatal("the Quickstart never starts jitd serve")
	}
	all := outputs.String()
	// The README's policy is one that policy check passes without a warning.
	if strings.Contains(all, "warning:") {
		t.Errorf("the Quickstart's output has warnings:\n%s", all)
	}
	for _, want := range []string{"outcome: needs_approval", "refused: nobody approves their own request", "is ISSUED", "grant:", "OK: "} {
		if !strings.Contains(all, want) {
			t.Errorf("the Quickstart's output lacks %q:\n%s", want, all)
		}
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
