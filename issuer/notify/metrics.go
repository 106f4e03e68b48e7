package notify

import "github.com/prometheus/client_golang/prometheus"

// The results counted by jitgrant_webhook_deliveries_total.
const (
	resultOK        = "ok"        // delivered
	resultRetry     = "retry"     // an attempt failed and will be retried
	resultFailed    = "failed"    // given up on: last attempt failed, or not retryable
	resultDropped   = "dropped"   // not queued: queue full, or notifier closed
	resultAbandoned = "abandoned" // still queued or in flight when Close gave up
)

var results = []string{resultOK, resultRetry, resultFailed, resultDropped, resultAbandoned}

// metrics are the notifier's, exposed by Notifier.Collector. The endpoint
// label is the endpoint's name, so cardinality is bounded by the
// configuration.
type metrics struct {
	deliveries    *prometheus.CounterVec
	seconds       *prometheus.HistogramVec
	auditFailures prometheus.Counter
	depthDesc     *prometheus.Desc
}

func newMetrics(eps []*endpoint) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_webhook_deliveries_total",
			Help: "Webhook events by endpoint and result: ok, retry (a failed attempt to be retried), failed (given up on), dropped (queue full or closed), abandoned (at shutdown).",
		}, []string{"endpoint", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitgrant_webhook_delivery_seconds",
			Help:    "Duration of one webhook delivery attempt, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"endpoint"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgrant_webhook_audit_failures_total",
			Help: "Audit entries for failed webhook deliveries that could not be written.",
		}),
		depthDesc: prometheus.NewDesc("jitgrant_webhook_queue_depth",
			"Webhook events waiting for delivery, by endpoint.", []string{"endpoint"}, nil),
	}
	for _, e := range eps {
		for _, r := range results {
			m.deliveries.WithLabelValues(e.name, r)
		}
	}
	return m
}

// Collector returns the notifier's metrics for a prometheus registry.
func (n *Notifier) Collector() prometheus.Collector { return (*collector)(n) }

type collector Notifier

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.metrics.deliveries.Describe(ch)
	c.metrics.seconds.Describe(ch)
	c.metrics.auditFailures.Describe(ch)
	ch <- c.metrics.depthDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics
	m.deliveries.Collect(ch)
	m.seconds.Collect(ch)
	m.auditFailures.Collect(ch)
	for _, w := range c.workers {
		ch <- prometheus.MustNewConstMetric(m.depthDesc, prometheus.GaugeValue, float64(len(w.queue)), w.ep.name)
	}
}
