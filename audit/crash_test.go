package audit

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/jitgrant/jitgrant/internal/kv"
)

// crashChildEnv, when set to a directory, makes TestCrashRecovery act as the
// child process: it appends to the log in that directory until killed.
const crashChildEnv = "JITGRANT_AUDIT_CRASH_CHILD"

// TestCrashRecovery kills a child process mid-append and checks that the
// reopened log holds every append the child saw acknowledged, and verifies.
// It tests recovery from a process crash only: SIGKILL leaves the page cache
// intact, so it cannot see a missing fsync; TestAppendIsSynced does.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read what the child reports as committed; kill it mid-stream.
	var reported int64 = -1
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		seq, ok := strings.CutPrefix(sc.Text(), "committed ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(seq, 10, 64)
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		reported = max(reported, n)
		if reported >= 300 && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading: lines already written count too
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped before being killed: %v", err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", err)
	}

	tl := openTestLog(t, dir, newFakeClock(), func(c *Config) { c.CheckpointEvery = 50 })
	if last := int64(tl.Size()) - 1; last < reported {
		t.Fatalf("after the crash the log ends at %d, but the child reported %d committed", last, reported)
	}
	t.Logf("child reported %d committed, log has %d entries", reported+1, tl.Size())
	mustAppend(t, tl.Log, record(-1)) // the log goes on
	ex, _ := export(t, tl.Log, 0, tl.Size())
	if _, err := Verify(ex, tl.verify, nil); err != nil {
		t.Fatal(err)
	}
}

// crashChild appends from four goroutines forever, printing each committed
// sequence number once Append has returned.
func crashChild(t *testing.T, dir string) {
	db, err := kv.Open(dir, kv.Config{GCInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := testKeys(t, "example.org/audit", 1)
	l, err := New(db.DB, Config{Signer: signer, Origin: testOrigin, Actor: testActor, CheckpointEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				e, err := l.Append(context.Background(), record(g*1_000_000+i), nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "committed %d\n", e.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
