package policy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports policy load metrics. Create one with [NewCollector],
// register it with your own registry, and pass it to [NewWatcher].
//
//	jitgrant_policy_loads_total{result="ok"|"failed"}  counter
//	jitgrant_policy_last_load_ok                       gauge, 1 or 0
//	jitgrant_policy_last_success_timestamp_seconds     gauge
//	jitgrant_policy_rules                              gauge, rules in force
type Collector struct {
	loads       *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
	rules       prometheus.Gauge
}

// NewCollector returns a Collector with zeroed metrics.
func NewCollector() *Collector {
	c := &Collector{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_policy_loads_total",
			Help: "Policy file loads, by result (ok, or failed: the previous policy stays in force).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgrant_policy_last_load_ok",
			Help: "1 if the last policy load succeeded, 0 if it failed.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgrant_policy_last_success_timestamp_seconds",
			Help: "Unix time of the last successful policy load.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgrant_policy_rules",
			Help: "Rules in the policy in force.",
		}),
	}
	// Export both series from the start, so a rate() sees the first failure.
	c.loads.WithLabelValues("ok")
	c.loads.WithLabelValues("failed")
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.loads.Describe(ch)
	c.lastOK.Describe(ch)
	c.lastSuccess.Describe(ch)
	c.rules.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.loads.Collect(ch)
	c.lastOK.Collect(ch)
	c.lastSuccess.Collect(ch)
	c.rules.Collect(ch)
}

// observe records a load event.
func (c *Collector) observe(ev LoadEvent, rules int) {
	if c == nil {
		return
	}
	if !ev.OK {
		c.loads.WithLabelValues("failed").Inc()
		c.lastOK.Set(0)
		return
	}
	c.loads.WithLabelValues("ok").Inc()
	c.lastOK.Set(1)
	c.lastSuccess.Set(float64(ev.Time.UnixNano()) / 1e9)
	c.rules.Set(float64(rules))
}
