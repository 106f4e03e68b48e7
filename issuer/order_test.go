package issuer

import (
	"testing"
	"time"
)

// TestPublishOrder checks that a report older than one already made is
// dropped, also after the request ended, until the grace has passed.
func TestPublishOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type report struct {
		version uint64
		state   State
		at      time.Duration
		want    bool
	}
	tests := []struct {
		name    string
		reports []report
	}{
		{"in order", []report{{1, StatePending, 0, true}, {2, StateApproved, 0, true}, {3, StateIssued, 0, true}}},
		{"approval reported after the sweeper's issue", []report{{1, StateApproved, 0, true}, {3, StateIssued, 0, true}, {2, StateApproved, 0, false}}},
		{"issue reported after the revocation", []report{{2, StateIssued, 0, true}, {3, StateRevoked, 0, true}, {2, StateIssued, 0, false}}},
		{"the same version twice", []report{{1, StatePending, 0, true}, {1, StatePending, 0, false}}},
		{"ended and forgotten", []report{{3, StateRevoked, 0, true}, {2, StateIssued, endedGrace / 2, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newPublishOrder()
			for i, rp := range tc.reports {
				got := o.admit(&Request{ID: "r1", Version: rp.version, State: rp.state}, t0.Add(rp.at))
				if got != rp.want {
					t.Errorf("report %d (v%d %s): admit = %v, want %v", i, rp.version, rp.state, got, rp.want)
				}
			}
		})
	}
	// Ended requests are forgotten once their grace has passed.
	o := newPublishOrder()
	o.admit(&Request{ID: "old", Version: 4, State: StateExpired}, t0)
	o.admit(&Request{ID: "live", Version: 1, State: StatePending}, t0)
	o.mu.Lock()
	o.pruneLocked(t0.Add(endedGrace + time.Second))
	_, old := o.seen["old"]
	_, live := o.seen["live"]
	o.mu.Unlock()
	if old || !live {
		t.Errorf("after the grace: old remembered %v (want false), live remembered %v (want true)", old, live)
	}
}
