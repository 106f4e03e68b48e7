package issuer_test

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/policy"
	"golang.org/x/mod/sumdb/note"
)

// history describes a data directory made by makeHistory: requests, most of
// them ended, written through the store's own API (no gRPC, no policy), and
// the audit entries that record them.
type history struct {
	Requests int // requests in all
	Live     int // of which the newest are live (half pending, half issued)
}

// historyStart is the creation time of the first request of a history; the
// requests follow each other by historyStep.
var historyStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const historyStep = 10 * time.Second

// historyEnd is the time just after the last request of h was created: its
// live requests are live then.
func (h history) end() time.Time { return historyStart.Add(time.Duration(h.Requests) * historyStep) }

var historyIDs = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// historyID returns a request ID as the issuer makes them (see newID),
// sorting by creation time.
func historyID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return "r" + historyIDs.EncodeToString(b[:])
}

// historySteps returns request i of h as the successive versions it went
// through, with the audit records of each step. The mix of fates gives
// about 2.95 entries per request.
func historySteps(h history, i int) ([]*issuer.Request, [][]audit.Record) {
	created := historyStart.Add(time.Duration(i) * historyStep)
	who := fmt.Sprintf("spiffe://example.org/workload/svc-%d", i%500)
	r := &issuer.Request{
		ID: historyID(created), Requester: who, State: issuer.StatePending,
		Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/Refund", Resources: []string{fmt.Sprintf("accounts/%d", i%10000)}}},
		TTL:    10 * time.Minute, Reason: fmt.Sprintf("INC-%d: refund a double charge", i), Rule: "refund",
		Factors:    []issuer.Factor{{Count: 1, Groups: []string{"sre"}}, {Count: 1, Groups: []string{"security"}}},
		CreateTime: created, UpdateTime: created, ReviewDeadline: created.Add(30 * time.Minute),
		PublicKey: make([]byte, 91), Version: 1,
	}
	_, _ = rand.Read(r.PublicKey)
	r.Missing = r.Factors
	rec := func(actor string, a audit.Action, details map[string]string) audit.Record {
		return audit.Record{Actor: actor, Action: a, Subject: r.ID, Details: details}
	}
	const jitd = "spiffe://example.org/jitd"
	steps := []*issuer.Request{r}
	recs := [][]audit.Record{{rec(who, audit.ActionRequestCreated, map[string]string{
		"rule": "refund", "scopes": "/bank.v1.Ledger/Refund[accounts/1]", "ttl": "10m0s", "reason": r.Reason, "outcome": "needs approval"})}}
	next := func(state issuer.State, t time.Time, rs ...audit.Record) *issuer.Request {
		prev := steps[len(steps)-1]
		n := *prev
		n.State, n.UpdateTime, n.Version = state, t, prev.Version+uint64(len(rs))
		steps, recs = append(steps, &n), append(recs, rs)
		return &n
	}
	issue := func(n *issuer.Request, t time.Time) audit.Record {
		n.StartTime, n.NotAfter, n.Missing = t, t.Add(n.TTL), nil
		n.Serial = fmt.Sprintf("%x", i+1)
		n.CertChain = [][]byte{make([]byte, 650)}
		_, _ = rand.Read(n.CertChain[0])
		return rec(jitd, audit.ActionGrantIssued, map[string]string{"not_after": n.NotAfter.Format(time.RFC3339), "serial": n.Serial})
	}
	review := func(n *issuer.Request, t time.Time, approve bool) {
		n.Reviews = []issuer.Review{{Approver: "spiffe://example.org/person/alice", Approve: approve, Time: t}}
	}
	at := created.Add(time.Minute)
	if live := i >= h.Requests-h.Live; live {
		if i%2 == 0 {
			n := next(issuer.StateIssued, at, rec(jitd, audit.ActionGrantIssued, nil))
			n.Reviews = []issuer.Review{{Approver: "spiffe://example.org/person/alice", Approve: true, Time: at}}
			recs[len(recs)-1][0] = issue(n, at)
			n.NotAfter = h.end().Add(time.Hour) // live when the history ends
		}
		return steps, recs
	}
	switch k := i % 20; {
	case k < 8: // reviewed, issued, expired: 4 entries
		n := next(issuer.StateIssued, at, rec("spiffe://example.org/person/alice", audit.ActionRequestApproved, nil), audit.Record{})
		review(n, at, true)
		recs[len(recs)-1][1] = issue(n, at)
		e := next(issuer.StateExpired, n.NotAfter, rec(jitd, audit.ActionGrantExpired, map[string]string{"not_after": n.NotAfter.Format(time.RFC3339)}))
		_ = e
	case k < 9: // auto-approved and issued in one commit, expired: 3 entries
		steps, recs = steps[:0], recs[:0]
		n := *r
		n.Version = 2
		first := rec(who, audit.ActionRequestCreated, map[string]string{"rule": "read", "outcome": "auto-approved"})
		iss := issue(&n, created)
		n.State = issuer.StateIssued
		steps, recs = append(steps, &n), append(recs, []audit.Record{first, iss})
		next(issuer.StateExpired, n.NotAfter, rec(jitd, audit.ActionGrantExpired, nil))
	case k < 13: // denied: 2 entries
		n := next(issuer.StateDenied, at, rec("spiffe://example.org/person/bob", audit.ActionRequestDenied, nil))
		review(n, at, false)
	case k < 15: // issued, then revoked: 3 entries
		n := next(issuer.StateIssued, at, rec("spiffe://example.org/person/alice", audit.ActionRequestApproved, nil), audit.Record{})
		review(n, at, true)
		recs[len(recs)-1][1] = issue(n, at)
		v := next(issuer.StateRevoked, at.Add(time.Minute), rec("spiffe://example.org/person/bob", audit.ActionGrantRevoked, map[string]string{"reason": "done"}))
		v.EndedBy, v.EndReason = "spiffe://example.org/person/bob", "done"
	case k < 18: // timed out: 2 entries
		next(issuer.StateTimedOut, r.ReviewDeadline, rec(jitd, audit.ActionRequestTimedOut, nil))
	default: // canceled: 2 entries
		next(issuer.StateCanceled, at, rec(who, audit.ActionRequestCanceled, nil))
	}
	return steps, recs
}

// makeHistory writes h into a new data directory dir (database in dir/db,
// audit key in dir/audit.key) through BadgerStore.Put, from many goroutines
// so that the log groups the commits, with unsynced writes.
func makeHistory(tb testing.TB, dir string, h history) {
	tb.Helper()
	skey, _, err := audit.GenerateKey("test")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit.key"), []byte(skey), 0o600); err != nil {
		tb.Fatal(err)
	}
	db, log := openHistory(tb, dir, true)
	store := issuer.NewBadgerStore(db.DB, log)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < h.Requests; i = int(next.Add(1) - 1) {
				steps, recs := historySteps(h, i)
				var prev *issuer.Request
				for j, s := range steps {
					if err := store.Put(ctx, prev, s, recs[j]...); err != nil {
						select {
						case errc <- fmt.Errorf("request %d step %d: %w", i, j, err):
						default:
						}
						return
					}
					prev = s
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		tb.Fatal(err)
	default:
	}
	if err := log.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// openHistory opens the database and audit log of a history directory.
func openHistory(tb testing.TB, dir string, async bool) (*kv.DB, *audit.Log) {
	tb.Helper()
	db, err := kv.Open(filepath.Join(dir, "db"), kv.Config{Logger: quiet(), GCInterval: -1, AsyncWrites: async, MemTableSize: 16 << 20}) // memtables as jitd
	if err != nil {
		tb.Fatal(err)
	}
	skey, err := os.ReadFile(filepath.Join(dir, "audit.key"))
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		tb.Fatal(err)
	}
	end := fakeclock.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	log, err := audit.New(db.DB, audit.Config{Signer: signer, Origin: "jitgrant audit example.org", Actor: jitdID.String(), Now: end.Now, Logger: quiet()})
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	return db, log
}

// benchHistory is the history of BenchmarkOpen: about 1M audit entries
// recording 350k requests.
var benchHistory = history{Requests: 350_000, Live: 200}

// cachedHistory returns a directory holding h, made on first use and kept
// in the system's temporary directory across runs (generating it takes
// minutes). JITGRANT_BENCH_OPEN_DIR names another directory.
func cachedHistory(b *testing.B, h history) string {
	b.Helper()
	dir := os.Getenv("JITGRANT_BENCH_OPEN_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("jitgrant-bench-open-%d-%d", h.Requests, h.Live))
	}
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	makeHistory(b, dir, h)
	b.Logf("made %d requests in %s in %v", h.Requests, dir, time.Since(start).Round(time.Second))
	if err := os.WriteFile(done, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkOpen measures a restart of the issuer's state: opening the
// database, the audit log (about 1M entries) and the issuer over 350k
// requests, of which 200 are live, until it could serve. It reports the Go
// heap in use after the open, with the history's ended requests left on
// disk. Run:
//
//	go test -run '^$' -bench BenchmarkOpen -count 5 ./issuer
func BenchmarkOpen(b *testing.B) {
	dir := cachedHistory(b, benchHistory)
	c, err := ca.Generate(ca.Config{TrustDomain: td})
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse([]byte(testPolicy), policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	policies := policy.NewStore(p)
	clock := fakeclock.New(benchHistory.end())
	var heap []float64
	b.ResetTimer()
	for b.Loop() {
		db, log := openHistory(b, dir, false)
		is, err := issuer.New(issuer.Config{CA: c, Store: issuer.NewBadgerStore(db.DB, log), Policies: policies, ID: jitdID, Clock: clock.Now, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = append(heap, float64(ms.HeapInuse)/(1<<20))
		if log.Size() < 1_000_000 {
			b.Fatalf("log has %d entries, want at least 1M", log.Size())
		}
		is.Close()
		if err := log.Close(); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	sort.Float64s(heap)
	b.ReportMetric(heap[len(heap)/2], "heap-MiB")
}
