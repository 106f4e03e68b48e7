package jitd

import "runtime"

// SpareProc gives the process one more P (GOMAXPROCS) than the Go runtime
// chose, unless the GOMAXPROCS environment variable is set (getenv reads
// it), and returns the value in effect. jitd serve calls it at start, and
// so does any program that hosts an issuer under load (cmd/jitbench).
//
// Why: every synced commit of the audit log blocks for a few hundred
// microseconds in msync inside Badger, and a goroutine in a blocking system
// call keeps its P until the runtime's monitor takes it back, which takes
// two of its ticks (20 µs each at best, more with the kernel's timer slack).
// On a 2-CPU machine under load, a runtime trace of jitbench showed one of
// the two Ps parked in msync during 39 % of the run while other goroutines
// waited to run. The spare P lets them run meanwhile: jitbench's CPU use
// rose from 1.75 to 1.88 cores and its throughput by about a tenth (see
// BENCHMARKS.md). When no commit is syncing, the extra P costs the kernel
// some thread switching, which the measurements include. Once set, the
// runtime no longer follows changes of the container's CPU limit while
// jitd runs; the limit is read at start.
func SpareProc(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	return n
}
