//go:build linux

package attest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseStartTime(t *testing.T) {
	tail := " S 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 %s 0 0\n"
	line := func(comm, start string) []byte {
		return []byte("42 (" + comm + ")" + strings.Replace(tail, "%s", start, 1))
	}
	tests := []struct {
		name    string
		stat    []byte
		want    uint64
		wantErr string
	}{
		{name: "plain", stat: line("sh", "12345"), want: 12345},
		{name: "comm with spaces and parentheses", stat: line("a) (b) 9 9", "7"), want: 7},
		{name: "max", stat: line("x", "18446744073709551615"), want: 18446744073709551615},
		{name: "empty", stat: nil, wantErr: "no ')'"},
		{name: "short", stat: []byte("42 (sh) S 1 2 3"), wantErr: "fields after the command name"},
		{name: "not a number", stat: line("sh", "-1"), wantErr: "start time"},
		{name: "overflow", stat: line("sh", "18446744073709551616"), wantErr: "start time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime(tt.stat)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStartTime = %d, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStartTime = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestProcDirOutlivesProcess checks the kernel behaviour the guard relies
// on: a handle on /proc/<pid> opened while a process runs gives nothing
// once the process is reaped, whoever has the PID since.
func TestProcDirOutlivesProcess(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "JITGRANT_ATTEST_TEST_CHILD=exit", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Not reaped until Wait: /proc/<pid> exists until then.
	d, err := openProcDir("/proc", cmd.Process.Pid)
	if err != nil {
		cmd.Wait()
		t.Fatal(err)
	}
	defer d.close()
	if _, err := d.startTime(); err != nil {
		t.Errorf("startTime before reaping: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if st, err := d.startTime(); !errors.Is(err, ErrProcessGone) {
		t.Errorf("startTime after reaping = %d, %v; want %v", st, err, ErrProcessGone)
	}
	if p, err := d.exePath(); !errors.Is(err, ErrProcessGone) {
		t.Errorf("exePath after reaping = %q, %v; want %v", p, err, ErrProcessGone)
	}
}
