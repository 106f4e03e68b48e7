package inputs

import (
	"testing"
	"time"
)

// FuzzParseRotations checks that any on-call file parses or fails cleanly,
// and that a parsed one answers without panicking.
func FuzzParseRotations(f *testing.F) {
	f.Add([]byte(rotaFile))
	f.Add([]byte("schedules:\n  - name: a\n    rotation: {start: 2025-01-01T00:00:00Z, shift: 1m, members: [spiffe://e.org/a]}\n"))
	f.Add([]byte("schedules: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRotations(data)
		if err != nil {
			if r != nil {
				t.Fatal("a rotations value with an error")
			}
			return
		}
		for _, at := range []time.Time{{}, t0, t0.Add(1000 * time.Hour), time.Unix(1<<40, 0)} {
			r.onCall("spiffe://e.org/a", at)
		}
	})
}
