package wlapi

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// openStreams counts the Workload API streams open now, by method.
type openStreams struct {
	mu   sync.Mutex
	n    map[string]int
	desc *prometheus.Desc
}

func newOpenStreams() *openStreams {
	return &openStreams{n: make(map[string]int), desc: prometheus.NewDesc("jitgrant_workload_api_streams",
		"Open SPIFFE Workload API streams, by method.", []string{"method"}, nil)}
}

// count is a grpc.StreamServerInterceptor that keeps the count.
func (o *openStreams) count(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	o.mu.Lock()
	o.n[info.FullMethod]++
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.n[info.FullMethod]--
		o.mu.Unlock()
	}()
	return handler(srv, ss)
}

func (o *openStreams) Describe(ch chan<- *prometheus.Desc) { ch <- o.desc }

func (o *openStreams) Collect(ch chan<- prometheus.Metric) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range []string{
		workload.SpiffeWorkloadAPI_FetchX509SVID_FullMethodName,
		workload.SpiffeWorkloadAPI_FetchX509Bundles_FullMethodName,
		workload.SpiffeWorkloadAPI_FetchJWTBundles_FullMethodName,
	} {
		ch <- prometheus.MustNewConstMetric(o.desc, prometheus.GaugeValue, float64(o.n[m]), m)
	}
}

// Collector returns the server's metrics for a prometheus registry.
func (s *Server) Collector() prometheus.Collector { return s.open }
