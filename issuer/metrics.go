package issuer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the issuer's counters, exposed by Issuer.Collector.
type metrics struct {
	activeDesc     *prometheus.Desc
	countsDesc     *prometheus.Desc
	watchersDesc   *prometheus.Desc
	requestsDesc   *prometheus.Desc
	unreviewedDesc *prometheus.Desc
	oldestDesc     *prometheus.Desc
	actions        *prometheus.CounterVec
	reviews        *prometheus.CounterVec
	mintSeconds    prometheus.Histogram
	decideSeconds  prometheus.Histogram
	issued         atomic.Uint64
	revoked        atomic.Uint64
	denied         atomic.Uint64
	breakGlass     atomic.Uint64
	reviewsRefused atomic.Uint64

	liveMu sync.Mutex
	live   map[string]State // pending and approved requests (issued ones are in the issued index)
	// unreviewed holds the creation time of every break-glass grant that
	// needs review, in any state.
	unreviewed map[string]time.Time
}

func newMetrics() *metrics {
	m := &metrics{
		activeDesc: prometheus.NewDesc("jitgrant_issuer_active_grants",
			"Grants issued and not yet expired or revoked.", nil, nil),
		countsDesc: prometheus.NewDesc("jitgrant_issuer_events_total",
			"Issuer events: grants issued and revoked, requests refused by policy, break-glass grants, reviews refused.",
			[]string{"event"}, nil),
		watchersDesc: prometheus.NewDesc("jitgrant_issuer_watchers",
			"Open WatchRequests and WatchRevocations streams.", []string{"stream"}, nil),
		requestsDesc: prometheus.NewDesc("jitgrant_issuer_requests",
			"Requests in each live state now (ended ones: jitgrant_issuer_request_changes_total).", []string{"state"}, nil),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_issuer_reviews_total",
			Help: "Reviews by verdict: approve and deny (counted), duplicate (counted once already), refused (caller may not review).",
		}, []string{"verdict"}),
		unreviewedDesc: prometheus.NewDesc("jitgrant_issuer_breakglass_unreviewed",
			"Break-glass grants whose after-the-fact review is outstanding.", nil, nil),
		oldestDesc: prometheus.NewDesc("jitgrant_issuer_breakglass_oldest_unreviewed_seconds",
			"Age of the oldest break-glass grant whose review is outstanding; 0 when none is.", nil, nil),
		live:       make(map[string]State),
		unreviewed: make(map[string]time.Time),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgrant_issuer_request_changes_total",
			Help: "Committed request changes, by audit action and resulting state.",
		}, []string{"action", "state"}),
		mintSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jitgrant_issuer_mint_seconds",
			Help:    "Time to sign and re-check one grant SVID.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 12),
		}),
		decideSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jitgrant_issuer_request_decision_seconds",
			Help:    "Time from a request's creation to its approval, denial or timeout.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
		}),
	}
	for _, v := range []string{verdictApprove, verdictDeny, verdictDuplicate, verdictRefused} {
		m.reviews.WithLabelValues(v) // every verdict is exported from the start, at 0
	}
	return m
}

// track records r's state for the requests gauge.
func (m *metrics) track(r *Request) {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	if r.State == StatePending || r.State == StateApproved {
		m.live[r.ID] = r.State
	} else {
		delete(m.live, r.ID)
	}
	m.trackReviewLocked(r)
}

// trackReview records whether r is a break-glass grant that needs review.
func (m *metrics) trackReview(r *Request) {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	m.trackReviewLocked(r)
}

func (m *metrics) trackReviewLocked(r *Request) {
	if r.BreakGlass && r.NeedsReview {
		m.unreviewed[r.ID] = r.CreateTime
	} else {
		delete(m.unreviewed, r.ID)
	}
}

// unreviewedStats returns how many break-glass grants need review and the
// age at now of the oldest (0 when none does).
func (m *metrics) unreviewedStats(now time.Time) (n int, oldest time.Duration) {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	for _, created := range m.unreviewed {
		oldest = max(oldest, now.Sub(created))
	}
	return len(m.unreviewed), oldest
}

// liveCounts returns the number of pending and approved requests.
func (m *metrics) liveCounts() (pending, approved int) {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	for _, s := range m.live {
		if s == StatePending {
			pending++
		} else {
			approved++
		}
	}
	return pending, approved
}

// The verdicts of jitgrant_issuer_reviews_total.
const (
	verdictApprove   = "approve"
	verdictDeny      = "deny"
	verdictDuplicate = "duplicate"
	verdictRefused   = "refused"
)

func (m *metrics) observe(r *Request, action audit.Action) {
	m.track(r)
	m.actions.WithLabelValues(string(action), string(r.State)).Inc()
	switch r.State {
	case StateApproved, StateDenied, StateTimedOut:
		m.decideSeconds.Observe(r.UpdateTime.Sub(r.CreateTime).Seconds())
	}
}

// Collector returns the issuer's metrics for a prometheus registry.
func (is *Issuer) Collector() prometheus.Collector { return (*collector)(is) }

type collector Issuer

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.metrics.actions.Describe(ch)
	c.metrics.reviews.Describe(ch)
	c.metrics.mintSeconds.Describe(ch)
	c.metrics.decideSeconds.Describe(ch)
	ch <- c.metrics.activeDesc
	ch <- c.metrics.countsDesc
	ch <- c.metrics.watchersDesc
	ch <- c.metrics.requestsDesc
	ch <- c.metrics.unreviewedDesc
	ch <- c.metrics.oldestDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics
	m.actions.Collect(ch)
	m.reviews.Collect(ch)
	m.mintSeconds.Collect(ch)
	m.decideSeconds.Collect(ch)
	for name, v := range map[string]*atomic.Uint64{
		"issued": &m.issued, "revoked": &m.revoked, "denied_by_policy": &m.denied,
		"break_glass": &m.breakGlass, "review_refused": &m.reviewsRefused,
	} {
		ch <- prometheus.MustNewConstMetric(m.countsDesc, prometheus.CounterValue, float64(v.Load()), name)
	}
	issued := float64(c.issued.count())
	ch <- prometheus.MustNewConstMetric(m.activeDesc, prometheus.GaugeValue, issued)
	pending, approved := m.liveCounts()
	ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.GaugeValue, float64(pending), string(StatePending))
	ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.GaugeValue, float64(approved), string(StateApproved))
	ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.GaugeValue, issued, string(StateIssued))
	ch <- prometheus.MustNewConstMetric(m.watchersDesc, prometheus.GaugeValue, float64(c.hub.count()), "requests")
	ch <- prometheus.MustNewConstMetric(m.watchersDesc, prometheus.GaugeValue, float64(c.revs.followers()), "revocations")
	n, oldest := m.unreviewedStats((*Issuer)(c).now())
	ch <- prometheus.MustNewConstMetric(m.unreviewedDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.oldestDesc, prometheus.GaugeValue, oldest.Seconds())
}
