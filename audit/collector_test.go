package audit

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	l := newTestLog(t, nil)
	appendN(t, l.Log, 0, 3)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(l.Log)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP jitgrant_audit_entries Number of committed audit entries.
# TYPE jitgrant_audit_entries gauge
jitgrant_audit_entries 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "jitgrant_audit_entries"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "jitgrant_audit_group_size", "jitgrant_audit_append_latency_seconds"); err != nil || n != 2 {
		t.Errorf("histograms: %d, %v", n, err)
	}
}
