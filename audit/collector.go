package audit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes a log's Stats as Prometheus metrics. Register it with
// the daemon's registry; it holds no global state.
type Collector struct {
	log *Log

	size, appended, failed, conflicts, cpFailures, cpSize, cpAge *prometheus.Desc
	latency, group                                               *prometheus.Desc
}

// NewCollector returns a Collector for l. Metric names start with
// jitgrant_audit_.
func NewCollector(l *Log) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("jitgrant_audit_"+name, help, nil, nil)
	}
	return &Collector{
		log:        l,
		size:       d("entries", "Number of committed audit entries."),
		appended:   d("appended_total", "Audit entries committed since start."),
		failed:     d("append_failures_total", "Appends that failed because the log could not commit."),
		conflicts:  d("commit_conflicts_total", "Group commits retried after a Badger conflict."),
		cpFailures: d("checkpoint_failures_total", "Checkpoints that could not be written."),
		cpSize:     d("checkpoint_size", "Tree size of the latest signed checkpoint."),
		cpAge:      d("checkpoint_age_seconds", "Age of the latest signed checkpoint."),
		latency:    d("append_latency_seconds", "Time from Append to commit."),
		group:      d("group_size", "Entries per group commit."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.appended, c.failed, c.conflicts, c.cpFailures, c.cpSize, c.cpAge, c.latency, c.group} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.log.Stats()
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size))
	ch <- prometheus.MustNewConstMetric(c.appended, prometheus.CounterValue, float64(s.Appended))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(c.conflicts, prometheus.CounterValue, float64(s.Conflicts))
	ch <- prometheus.MustNewConstMetric(c.cpFailures, prometheus.CounterValue, float64(s.CheckpointFailures))
	if !s.CheckpointTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.cpSize, prometheus.GaugeValue, float64(s.CheckpointSize))
		ch <- prometheus.MustNewConstMetric(c.cpAge, prometheus.GaugeValue, s.CheckpointAge.Seconds())
	}
	ch <- constHistogram(c.latency, s.AppendLatency)
	ch <- constHistogram(c.group, s.GroupSize)
}

func constHistogram(d *prometheus.Desc, h Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}
