package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/syncbuf"
)

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// background runs jitctl in a goroutine; its output can be read while it
// runs, and wait returns its result.
type background struct {
	out  *syncbuf.Buffer
	done chan result
}

func (e *env) background(ctx context.Context, who string, args ...string) *background {
	b := &background{out: &syncbuf.Buffer{}, done: make(chan result, 1)}
	go func() { b.done <- e.jitctlCtx(ctx, who, b.out, args...) }()
	return b
}

// firstLine waits for the first complete line of output.
func (b *background) firstLine(t *testing.T) string {
	t.Helper()
	var line string
	eventually(t, 30*time.Second, "the first line of output", func() bool {
		s := b.out.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return false
		}
		line = s[:i]
		return true
	})
	return line
}

func (b *background) wait(t *testing.T) result {
	t.Helper()
	select {
	case r := <-b.done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatalf("jitctl still running after a minute; output so far:\n%s", b.out.String())
		return result{}
	}
}

// field returns the value of the first "key: value" line of a jitctl
// detail view (show, inspect), "" when there is none.
func field(out, key string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
