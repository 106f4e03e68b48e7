package audit

import (
	"math"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the log's measurements, for metrics exporters (see
// Collector). Counters count since New.
type Stats struct {
	// Size is the number of committed entries.
	Size uint64
	// Appended counts committed entries (including checkpoint entries).
	Appended uint64
	// Failed counts appends that failed because the log could not commit
	// (not those whose change function failed).
	Failed uint64
	// Conflicts counts group commits retried after a Badger conflict.
	Conflicts uint64
	// CheckpointFailures counts checkpoints that could not be written.
	CheckpointFailures uint64
	// CheckpointSize and CheckpointTime describe the latest checkpoint
	// (zero if there is none).
	CheckpointSize uint64
	CheckpointTime time.Time
	// CheckpointAge is how old the latest checkpoint is by the log's clock
	// (zero if there is none).
	CheckpointAge time.Duration
	// AppendLatency is the time from Append to commit, in seconds.
	AppendLatency Histogram
	// GroupSize is the number of entries per commit.
	GroupSize Histogram
}

// Histogram is a snapshot of a histogram with fixed buckets.
type Histogram struct {
	// Bounds are the buckets' inclusive upper bounds, increasing.
	Bounds []float64
	// Cumulative[i] counts observations <= Bounds[i].
	Cumulative []uint64
	// Count and Sum are over all observations.
	Count uint64
	Sum   float64
}

// metrics holds the counters. Only the writer goroutine updates them;
// atomics let Stats read them concurrently.
type metrics struct {
	entries, failures, conflicts, checkpointFailures atomic.Uint64

	latency, batch histogram
}

func (m *metrics) init() {
	m.latency.init([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5})
	m.batch.init([]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
}

type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, last is +Inf
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func (h *histogram) init(bounds []float64) {
	h.bounds = bounds
	h.counts = make([]atomic.Uint64, len(bounds)+1)
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{
		Bounds:     append([]float64(nil), h.bounds...),
		Cumulative: make([]uint64, len(h.bounds)),
		Count:      h.count.Load(),
		Sum:        math.Float64frombits(h.sum.Load()),
	}
	var c uint64
	for i := range h.bounds {
		c += h.counts[i].Load()
		s.Cumulative[i] = c
	}
	return s
}

// Stats returns the log's current measurements.
func (l *Log) Stats() Stats {
	s := Stats{
		Size:               l.Size(),
		Appended:           l.m.entries.Load(),
		Failed:             l.m.failures.Load(),
		Conflicts:          l.m.conflicts.Load(),
		CheckpointFailures: l.m.checkpointFailures.Load(),
		AppendLatency:      l.m.latency.snapshot(),
		GroupSize:          l.m.batch.snapshot(),
	}
	if cp := l.latest.Load(); cp != nil {
		s.CheckpointSize, s.CheckpointTime = cp.Size, cp.Time
		s.CheckpointAge = l.cfg.Now().Sub(cp.Time)
	}
	return s
}
