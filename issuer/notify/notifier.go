package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/prometheus/client_golang/prometheus"
)

// auditQueueSize bounds the audit records waiting to be written; beyond it
// they are counted in jitgrant_webhook_audit_failures_total and logged.
const auditQueueSize = 1024

// userAgent is sent with every delivery.
const userAgent = "jitgrant-webhook/1"

// Notifier delivers events to webhook endpoints. Each endpoint has its own
// queue and goroutine, so a slow or dead endpoint delays no other, and
// Notify never waits for any. It is safe for concurrent use.
type Notifier struct {
	cfg     Config
	workers []*worker
	metrics *metrics
	ctx     context.Context // canceled when Close gives up
	cancel  context.CancelFunc

	mu        sync.RWMutex // held to send on queues and audits, and to close them
	closed    bool
	audits    chan audit.Record // nil without Config.Audit, and after shutdown
	auditFull atomic.Bool       // audit records are being lost (log transitions only)

	wg          sync.WaitGroup // the workers
	auditorDone chan struct{}
	done        chan struct{} // closed when every goroutine has ended
}

// worker delivers one endpoint's events in order.
type worker struct {
	ep       *endpoint
	queue    chan job
	counts   map[string]prometheus.Counter // by result
	seconds  prometheus.Observer
	dropping atomic.Bool   // events are being dropped (log transitions only)
	dropped  atomic.Uint64 // dropped since dropping began
}

// job is one event to deliver, its body encoded once for every endpoint.
type job struct {
	id, requestID string
	kind          Kind
	body          []byte
}

// New validates cfg, reads the endpoints' secrets and starts a goroutine
// per endpoint. Close stops them.
func New(cfg Config) (*Notifier, error) {
	eps, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		cfg: cfg, metrics: newMetrics(eps), ctx: ctx, cancel: cancel,
		auditorDone: make(chan struct{}), done: make(chan struct{}),
	}
	for _, e := range eps {
		w := &worker{ep: e, queue: make(chan job, cfg.QueueSize), counts: map[string]prometheus.Counter{},
			seconds: n.metrics.seconds.WithLabelValues(e.name)}
		for _, r := range results {
			w.counts[r] = n.metrics.deliveries.WithLabelValues(e.name, r)
		}
		n.workers = append(n.workers, w)
	}
	if cfg.Audit != nil {
		n.audits = make(chan audit.Record, auditQueueSize)
		go n.auditor(n.audits)
	} else {
		close(n.auditorDone)
	}
	n.wg.Add(len(n.workers))
	for _, w := range n.workers {
		go n.run(w)
	}
	return n, nil
}

// OnChange has the signature of issuer.Config.OnChange: it notifies the
// event FromChange makes of a change, if any.
func (n *Notifier) OnChange(r *issuer.Request, action audit.Action) {
	if ev, ok := FromChange(r, action); ok {
		n.Notify(ev)
	}
}

// Notify queues ev for every endpoint that wants its kind, without waiting:
// where the queue is full, or after Close, the event is dropped, counted,
// logged and audited. An empty ID, zero Time or empty Text is filled in.
func (n *Notifier) Notify(ev Event) {
	if !slices.ContainsFunc(n.workers, func(w *worker) bool { return w.ep.wants(ev.Kind) }) {
		return
	}
	if ev.ID == "" {
		ev.ID = newEventID()
	}
	if ev.Time.IsZero() {
		ev.Time = n.cfg.Clock()
	}
	if ev.Text == "" {
		ev.Text = ev.summary()
	}
	body, err := json.Marshal(ev)
	if err != nil { // cannot happen: Event has only plain fields
		n.cfg.Logger.Error("notify: encoding an event", "event", ev.ID, "error", err)
		return
	}
	j := job{id: ev.ID, requestID: ev.RequestID, kind: ev.Kind, body: body}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, w := range n.workers {
		if !w.ep.wants(ev.Kind) {
			continue
		}
		why := "notifier closed"
		if !n.closed {
			select {
			case w.queue <- j:
				// Once half empty again, so that a queue hovering at full
				// does not log twice per event.
				if len(w.queue) <= cap(w.queue)/2 && w.dropping.CompareAndSwap(true, false) {
					n.cfg.Logger.Info("notify: webhook queue accepts events again", "endpoint", w.ep.name, "dropped", w.dropped.Swap(0))
				}
				continue
			default:
				why = fmt.Sprintf("queue full (%d events)", cap(w.queue))
			}
		}
		n.dropLocked(w, j, why)
	}
}

// dropLocked counts, logs and audits an event not queued; n.mu is held.
func (n *Notifier) dropLocked(w *worker, j job, why string) {
	w.counts[resultDropped].Inc()
	w.dropped.Add(1)
	if w.dropping.CompareAndSwap(false, true) {
		n.cfg.Logger.Warn("notify: dropping webhook events", "endpoint", w.ep.name, "url", w.ep.safeURL, "why", why)
	}
	n.auditLocked(n.record(w, j, resultDropped, 0, errors.New(why), 0))
}

// Close stops accepting events and waits for the queued ones to be
// delivered (or given up on) until ctx ends; then it abandons the rest,
// counting them, and returns an error wrapping ctx's. Audit records still
// waiting are written, or abandoned likewise. Close may be called again.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		for _, w := range n.workers {
			close(w.queue)
		}
		go n.shutdown()
	}
	n.mu.Unlock()
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		select {
		case <-n.done:
			return nil
		default:
		}
		n.cancel() // every attempt, sleep and audit call honours n.ctx
		<-n.done
		n.cfg.Logger.Warn("notify: closed before every webhook event was delivered", "error", ctx.Err())
		return fmt.Errorf("notify: close: %w", ctx.Err())
	}
}

// shutdown waits for the workers, then for the audit records they left.
func (n *Notifier) shutdown() {
	n.wg.Wait()
	n.mu.Lock()
	if n.audits != nil {
		close(n.audits)
	}
	n.audits = nil // later drops are only counted
	n.mu.Unlock()
	<-n.auditorDone
	n.cancel()
	close(n.done)
}

// run delivers w's events until its queue is closed and empty.
func (n *Notifier) run(w *worker) {
	defer n.wg.Done()
	for j := range w.queue {
		if n.ctx.Err() != nil {
			w.counts[resultAbandoned].Inc()
			continue
		}
		n.deliver(w, j)
	}
}

// deliver makes up to MaxAttempts attempts to deliver j to w's endpoint.
func (n *Notifier) deliver(w *worker, j job) {
	log := n.cfg.Logger.With("endpoint", w.ep.name, "url", w.ep.safeURL, "event", j.id, "kind", j.kind, "request", j.requestID)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		f := n.post(w, j)
		w.seconds.Observe(time.Since(start).Seconds())
		switch {
		case f == nil:
			w.counts[resultOK].Inc()
			log.Debug("notify: webhook delivered", "attempts", attempt)
			return
		case n.ctx.Err() != nil:
			w.counts[resultAbandoned].Inc()
			return
		case !f.retry || attempt >= n.cfg.MaxAttempts:
			w.counts[resultFailed].Inc()
			log.Warn("notify: webhook delivery failed", "attempts", attempt, "error", f)
			n.audit(n.record(w, j, resultFailed, attempt, f, f.status))
			return
		}
		w.counts[resultRetry].Inc()
		d := n.backoff(attempt, f.after)
		log.Debug("notify: webhook attempt failed; retrying", "attempt", attempt, "error", f, "retry_in", d)
		if n.cfg.Sleep(n.ctx, d) != nil {
			w.counts[resultAbandoned].Inc()
			return
		}
	}
}

// failure is a failed attempt.
type failure struct {
	status int           // HTTP status, 0 if there was no response
	retry  bool          // worth another attempt
	after  time.Duration // asked for by Retry-After
	err    error
}

func (f *failure) Error() string { return f.err.Error() }

// post makes one attempt, signing the body with a fresh timestamp.
func (n *Notifier) post(w *worker, j job) *failure {
	ctx, cancel := context.WithTimeout(n.ctx, w.ep.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.ep.url, bytes.NewReader(j.body))
	if err != nil { // cannot happen: the URL was validated
		return &failure{err: errors.New("building the request failed")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderEvent, string(j.kind))
	req.Header.Set(HeaderDelivery, j.id)
	req.Header.Set(HeaderSignature, Sign(w.ep.secret, j.body, n.cfg.Clock()))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return &failure{retry: true, err: transportError(err, w.ep.timeout)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return &failure{status: code, retry: true, after: retryAfter(resp.Header.Get("Retry-After"), n.cfg.Clock()),
			err: fmt.Errorf("HTTP %s", resp.Status)}
	case code >= 300 && code < 400:
		return &failure{status: code, err: fmt.Errorf("HTTP %s: redirects are not followed", resp.Status)}
	default:
		return &failure{status: code, err: fmt.Errorf("HTTP %s", resp.Status)}
	}
}

// transportError strips the URL, which may hold a token, from a client
// error.
func transportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	if ue.Timeout() {
		return fmt.Errorf("no response within %s", timeout)
	}
	return ue.Err
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(min(max(s, 0), 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// backoff returns the delay after a failed attempt: Backoff doubled per
// earlier retry, capped at MaxBackoff, with jitter over its upper half; at
// least what Retry-After asked for, up to MaxBackoff.
func (n *Notifier) backoff(attempt int, after time.Duration) time.Duration {
	d := n.cfg.Backoff
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	return max(d, min(after, n.cfg.MaxBackoff))
}

// record builds the audit record of an event given up on.
func (n *Notifier) record(w *worker, j job, result string, attempts int, err error, status int) audit.Record {
	d := map[string]string{
		"endpoint": w.ep.name, "url": w.ep.safeURL, "event": j.id, "kind": string(j.kind),
		"result": result, "attempts": strconv.Itoa(attempts), "error": truncate(err.Error(), 512),
	}
	if status != 0 {
		d["status"] = strconv.Itoa(status)
	}
	return audit.Record{Actor: n.cfg.Actor, Action: audit.ActionWebhookFailed, Subject: j.requestID, Details: d}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// audit queues rec for the auditor without waiting.
func (n *Notifier) audit(rec audit.Record) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	n.auditLocked(rec)
}

// auditLocked is audit with n.mu held.
func (n *Notifier) auditLocked(rec audit.Record) {
	if n.cfg.Audit == nil {
		return
	}
	select {
	case n.audits <- rec: // a nil channel (after shutdown) is never ready
		if n.auditFull.CompareAndSwap(true, false) {
			n.cfg.Logger.Info("notify: audit queue accepts records again")
		}
	default:
		n.metrics.auditFailures.Inc()
		if n.auditFull.CompareAndSwap(false, true) {
			n.cfg.Logger.Error("notify: audit queue full or closed; webhook failures go unaudited (see jitgrant_webhook_audit_failures_total)",
				"endpoint", rec.Details["endpoint"], "event", rec.Details["event"], "request", rec.Subject)
		}
	}
}

// auditor writes the audit records queued on ch.
func (n *Notifier) auditor(ch <-chan audit.Record) {
	defer close(n.auditorDone)
	for rec := range ch {
		if err := n.ctx.Err(); err != nil {
			n.metrics.auditFailures.Inc()
			continue
		}
		if err := n.cfg.Audit(n.ctx, rec); err != nil {
			n.metrics.auditFailures.Inc()
			n.cfg.Logger.Error("notify: auditing a failed webhook delivery", "endpoint", rec.Details["endpoint"], "event", rec.Details["event"], "request", rec.Subject, "error", err)
		}
	}
}
