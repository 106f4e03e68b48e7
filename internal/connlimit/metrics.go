package connlimit

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the limits' metrics. Create one with [NewCollector],
// pass it to the listeners and [Streams], and register it.
//
//	jitgrant_listener_connections{listener}          gauge, open now
//	jitgrant_listener_max_connections{listener}      gauge, the cap
//	jitgrant_listener_cap_reached_total{listener}    counter, accepts that found the cap reached
//	jitgrant_listener_evicted_total{listener}        counter, connections closed in their handshake to make room
//	jitgrant_streams_refused_total{limit}            counter, streams refused (limit="per_identity")
//
// A nil *Collector counts nothing.
type Collector struct {
	open, max *prometheus.GaugeVec
	reached   *prometheus.CounterVec
	evict     *prometheus.CounterVec
	refused   *prometheus.CounterVec
}

// NewCollector returns a Collector with zeroed metrics.
func NewCollector() *Collector {
	c := &Collector{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitgrant_listener_connections",
			Help: "Connections open on the listener.",
		}, []string{"listener"}),
		max: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitgrant_listener_max_connections",
			Help: "The listener's cap on open connections.",
		}, []string{"listener"}),
		reached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_listener_cap_reached_total",
			Help: "Times the listener found its cap reached when about to accept a connection.",
		}, []string{"listener"}),
		evict: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_listener_evicted_total",
			Help: "Connections closed during their handshake to make room at the cap.",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_streams_refused_total",
			Help: "Streams refused with ResourceExhausted, by the limit hit.",
		}, []string{"limit"}),
	}
	c.refused.WithLabelValues("per_identity")
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.open.Describe(ch)
	c.max.Describe(ch)
	c.reached.Describe(ch)
	c.evict.Describe(ch)
	c.refused.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.open.Collect(ch)
	c.max.Collect(ch)
	c.reached.Collect(ch)
	c.evict.Collect(ch)
	c.refused.Collect(ch)
}

func (c *Collector) limit(name string, max int) {
	if c != nil {
		c.max.WithLabelValues(name).Set(float64(max))
		c.open.WithLabelValues(name)
		c.reached.WithLabelValues(name)
		c.evict.WithLabelValues(name)
	}
}

func (c *Collector) evicted(name string) {
	if c != nil {
		c.evict.WithLabelValues(name).Inc()
	}
}

func (c *Collector) opened(name string) {
	if c != nil {
		c.open.WithLabelValues(name).Inc()
	}
}

func (c *Collector) closed(name string) {
	if c != nil {
		c.open.WithLabelValues(name).Dec()
	}
}

func (c *Collector) capReached(name string) {
	if c != nil {
		c.reached.WithLabelValues(name).Inc()
	}
}

func (c *Collector) streamRefused() {
	if c != nil {
		c.refused.WithLabelValues("per_identity").Inc()
	}
}
