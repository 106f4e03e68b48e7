package jitd

import (
	"runtime"
	"testing"
)

func TestSpareProc(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	tests := []struct {
		name string
		env  string
		want int
	}{
		{"GOMAXPROCS unset: one spare P", "", before + 1},
		{"GOMAXPROCS set: left alone", "3", before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GOMAXPROCS(before)
			getenv := func(k string) string {
				if k != "GOMAXPROCS" {
					t.Errorf("SpareProc read %s", k)
				}
				return tt.env
			}
			if got := SpareProc(getenv); got != tt.want || runtime.GOMAXPROCS(0) != tt.want {
				t.Errorf("SpareProc = %d, GOMAXPROCS now %d; want %d", got, runtime.GOMAXPROCS(0), tt.want)
			}
		})
	}
}
