package verifier

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// reason is the outcome of one per-RPC decision.
type reason uint8

const (
	reasonAllowed reason = iota
	reasonPublic
	reasonUnauthenticated
	reasonGrantNotIdentity
	reasonNoGrant
	reasonMethod
	reasonResource
	reasonResourceField
	reasonNoResourceField
	reasonNotCanonical
	reasonNotYetValid
	reasonExpired
	reasonRevoked
	reasonStale
	reasonUseLimit
	numReasons
)

var reasonNames = [numReasons]string{
	reasonAllowed:          "allowed",
	reasonPublic:           "public_method",
	reasonUnauthenticated:  "unauthenticated",
	reasonGrantNotIdentity: "grant_not_identity",
	reasonNoGrant:          "no_grant",
	reasonMethod:           "method_not_in_scope",
	reasonResource:         "resource_not_in_scope",
	reasonResourceField:    "resource_field_unreadable",
	reasonNoResourceField:  "resource_scope_without_field",
	reasonNotCanonical:     "resource_not_canonical",
	reasonNotYetValid:      "not_yet_valid",
	reasonExpired:          "expired",
	reasonRevoked:          "revoked",
	reasonStale:            "revocations_stale",
	reasonUseLimit:         "use_limit_reached",
}

func (r reason) String() string { return reasonNames[r] }

// hint is what the log adds to a denial whose cause is not obvious from its
// reason alone.
func (r reason) hint() string {
	switch r {
	case reasonGrantNotIdentity:
		return "a grant certificate was presented where only identity SVIDs are accepted"
	case reasonNoResourceField:
		return "the grant limits this method to resources, but Config.ResourceFields names no resource field for it, so no call can match"
	case reasonNotCanonical:
		return `the resource has an empty, "." or ".." segment`
	case reasonNotYetValid:
		return "the certificate starts after this server's time: check the clocks of the issuer and this server (NTP)"
	case reasonStale:
		return "the revocation feed has had no contact with the issuer for StaleAfter"
	}
	return ""
}

func (r reason) allowed() bool { return r == reasonAllowed || r == reasonPublic }

// metrics counts decisions and handshakes with atomics, so that counting
// costs the RPC path no allocation and no lock, and exposes them as a
// prometheus.Collector.
type metrics struct {
	decisions      [numReasons]atomic.Uint64
	handshakesOK   atomic.Uint64
	handshakesFail atomic.Uint64
	connections    atomic.Int64

	decisionsDesc  *prometheus.Desc
	handshakesDesc *prometheus.Desc
	connsDesc      *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		decisionsDesc: prometheus.NewDesc("jitgrant_verifier_decisions_total",
			"Per-RPC authorization decisions, by outcome and reason.", []string{"decision", "reason"}, nil),
		handshakesDesc: prometheus.NewDesc("jitgrant_verifier_handshakes_total",
			"mTLS handshakes, by result.", []string{"result"}, nil),
		connsDesc: prometheus.NewDesc("jitgrant_verifier_connections",
			"Open connections whose peer was verified by this verifier.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.decisionsDesc
	ch <- m.handshakesDesc
	ch <- m.connsDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for r := range numReasons {
		decision := "deny"
		if r.allowed() {
			decision = "allow"
		}
		ch <- prometheus.MustNewConstMetric(m.decisionsDesc, prometheus.CounterValue,
			float64(m.decisions[r].Load()), decision, r.String())
	}
	ch <- prometheus.MustNewConstMetric(m.handshakesDesc, prometheus.CounterValue, float64(m.handshakesOK.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(m.handshakesDesc, prometheus.CounterValue, float64(m.handshakesFail.Load()), "failed")
	ch <- prometheus.MustNewConstMetric(m.connsDesc, prometheus.GaugeValue, float64(m.connections.Load()))
}
