package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// sweepEvery is how often a handshake also drops cache entries of expired
// certificates whose connections were never closed.
const sweepEvery = time.Minute

// Verifier authorizes RPCs by jitgrant grants. Build one with [New] and
// install it with [Verifier.ServerOptions]. It is safe for concurrent use.
type Verifier struct {
	cfg      Config
	identity []grant.Scope
	public   []grant.Scope
	fields   map[string]string
	metrics  *metrics
	revSet   *RevocationSet // cfg.Revocations when it is a *RevocationSet
	fresh    Freshness      // cfg.Revocations when it implements Freshness
	uses     UseReporter    // cfg.Revocations when it implements UseReporter
	conns    sync.Map       // *x509.Certificate (peer leaf) -> *peerConn
	counters sync.Map       // grant ID -> *useCounter
	swept    atomic.Int64   // unix nanos of the last sweep
}

// peerConn is what the handshake learned about one connection's peer.
type peerConn struct {
	id        spiffeid.ID
	grant     *grant.Grant // nil: an identity SVID without a grant
	match     *grant.Matcher
	notBefore time.Time
	notAfter  time.Time
	issued    time.Time   // the grant's issue time: notBefore + IssuerBackdate
	uses      *useCounter // nil when the grant has no use limit
}

// useCounter counts the uses of one grant across all its connections and
// certificates: an extended grant has several, with one grant ID and later
// ends; the counter lives until the latest end.
type useCounter struct {
	used     atomic.Uint32
	limit    uint32
	notAfter atomic.Int64 // Unix nanoseconds: the latest end of the grant's certificates
}

// extend moves the counter's end to t if t is later.
func (u *useCounter) extend(t time.Time) {
	for {
		cur := u.notAfter.Load()
		if t.UnixNano() <= cur || u.notAfter.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

// take consumes one use, reporting false when none is left.
func (u *useCounter) take() bool {
	for {
		n := u.used.Load()
		if n >= u.limit {
			return false
		}
		if u.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// New returns a Verifier for cfg.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, metrics: newMetrics(), fields: make(map[string]string, len(cfg.ResourceFields))}
	for _, m := range cfg.IdentityMethods {
		v.identity = append(v.identity, grant.Scope{Method: m})
	}
	for _, m := range cfg.PublicMethods {
		v.public = append(v.public, grant.Scope{Method: m})
	}
	for m, f := range cfg.ResourceFields {
		v.fields[m] = f
	}
	v.revSet, _ = cfg.Revocations.(*RevocationSet)
	if f, ok := cfg.Revocations.(*Feed); ok {
		v.revSet = f.Set()
	}
	v.fresh, _ = cfg.Revocations.(Freshness)
	v.uses, _ = cfg.Revocations.(UseReporter)
	v.swept.Store(cfg.Clock().UnixNano())
	return v, nil
}

// ServerOptions returns the options that install the verifier on a gRPC
// server: its transport credentials and its unary and stream interceptors,
// chained first. Interceptors chained after them (grpc.ChainUnaryInterceptor)
// see the peer as grpc-go's credentials.TLSInfo and the grant in the context.
func (v *Verifier) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(v.TransportCredentials()),
		grpc.ChainUnaryInterceptor(v.UnaryInterceptor),
		grpc.ChainStreamInterceptor(v.StreamInterceptor),
	}
}

// Collector returns the verifier's metrics, to be registered in the service's
// own prometheus registry.
func (v *Verifier) Collector() prometheus.Collector { return v.metrics }

// Revocations returns the verifier's revocation set, or nil when Config set a
// RevocationChecker of another type.
func (v *Verifier) Revocations() *RevocationSet { return v.revSet }

// admit records a peer whose chain the handshake verified, parsing its grant
// once. It returns the cache key, or an error that fails the handshake.
func (v *Verifier) admit(state *credentials.TLSInfo) (*x509.Certificate, error) {
	if len(state.State.PeerCertificates) == 0 || state.SPIFFEID == nil {
		return nil, errors.New("verifier: handshake: peer presented no SPIFFE certificate")
	}
	leaf := state.State.PeerCertificates[0]
	id, err := spiffeid.FromURI(state.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("verifier: handshake: peer ID: %w", err)
	}
	pc := &peerConn{id: id, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter, issued: leaf.NotBefore.Add(IssuerBackdate)}
	g, err := grant.FromCertificate(leaf)
	switch {
	case errors.Is(err, grant.ErrNoGrant):
	case err != nil:
		return nil, fmt.Errorf("verifier: handshake: peer %s: %w", id, err)
	default:
		pc.grant, pc.match = g, grant.NewMatcher(g)
		if g.UseLimit > 0 {
			c, _ := v.counters.LoadOrStore(g.ID, &useCounter{limit: g.UseLimit})
			pc.uses = c.(*useCounter)
			pc.uses.extend(leaf.NotAfter)
		}
	}
	v.conns.Store(leaf, pc)
	v.metrics.connections.Add(1)
	v.maybeSweep()
	return leaf, nil
}

// release forgets a connection's peer when the connection closes.
func (v *Verifier) release(leaf *x509.Certificate) {
	if _, ok := v.conns.LoadAndDelete(leaf); ok {
		v.metrics.connections.Add(-1)
	}
}

// maybeSweep drops, at most once per sweepEvery, cache entries and use
// counters of certificates that have expired.
func (v *Verifier) maybeSweep() {
	now := v.cfg.Clock()
	last := v.swept.Load()
	if now.UnixNano()-last < int64(sweepEvery) || !v.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	v.conns.Range(func(k, val any) bool {
		if now.After(val.(*peerConn).notAfter) {
			v.release(k.(*x509.Certificate))
		}
		return true
	})
	v.counters.Range(func(k, val any) bool {
		if now.UnixNano() > val.(*useCounter).notAfter.Load() {
			v.counters.Delete(k)
		}
		return true
	})
	if v.revSet != nil {
		v.revSet.Prune(now)
	}
}

// lookup finds the verified peer of the RPC in ctx.
func (v *Verifier) lookup(ctx context.Context) *peerConn {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	pc, ok := v.conns.Load(info.State.PeerCertificates[0])
	if !ok {
		return nil
	}
	return pc.(*peerConn)
}

// decide runs the per-RPC checks, in the documented order, for a call of
// method with request req by the peer pc, and returns the outcome and the
// call's resource ("" when none). For a stream, req is nil and a method with a
// resource field has its resource checked later, message by message. It does
// not allocate.
func (v *Verifier) decide(pc *peerConn, method string, req any, stream bool) (reason, string) {
	if pc == nil {
		return reasonUnauthenticated, ""
	}
	// The handshake admits a certificate that is not yet valid by this
	// server's clock, so that its holder learns why here (clock skew).
	now := v.cfg.Clock()
	if now.Before(pc.notBefore) {
		return reasonNotYetValid, ""
	}
	for i := range v.identity {
		if v.identity[i].MatchMethod(method) {
			if pc.grant != nil {
				return reasonGrantNotIdentity, ""
			}
			return reasonPublic, "" // counted as a public method: no grant needed
		}
	}
	for i := range v.public {
		if v.public[i].MatchMethod(method) {
			return reasonPublic, ""
		}
	}
	g := pc.grant
	if g == nil {
		return reasonNoGrant, ""
	}
	field, hasField := v.fields[method]
	var resource string
	if hasField && !stream {
		var ok bool
		if resource, ok = readResource(req, field); !ok {
			return reasonResourceField, ""
		}
		if resource != "" && !grant.CanonicalResource(resource) {
			return reasonNotCanonical, resource
		}
	}
	switch pc.match.Authorize(method, resource) {
	case grant.MethodNotInScope:
		return reasonMethod, resource
	case grant.ResourceNotInScope:
		if !hasField {
			return reasonNoResourceField, ""
		}
		if !stream {
			return reasonResource, resource
		}
	}
	if now.After(pc.notAfter) {
		return reasonExpired, resource
	}
	if v.cfg.Revocations.Revoked(g.ID) {
		return reasonRevoked, resource
	}
	if v.fresh != nil && v.fresh.RefuseStale(pc.issued) {
		return reasonStale, resource
	}
	if pc.uses != nil {
		if !pc.uses.take() {
			return reasonUseLimit, resource
		}
		if v.uses != nil {
			v.uses.ReportUse(g.ID)
		}
	}
	return reasonAllowed, resource
}

// record counts a decision and logs a denial with its detail.
func (v *Verifier) record(ctx context.Context, r reason, pc *peerConn, method, resource string) {
	v.metrics.decisions[r].Add(1)
	if r.allowed() {
		return
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("reason", r.String())}
	if pc != nil {
		attrs = append(attrs, slog.String("peer", pc.id.String()))
		if pc.grant != nil {
			attrs = append(attrs, slog.String("grant", pc.grant.ID), slog.Time("grant_expires", pc.notAfter))
		}
	}
	if resource != "" {
		attrs = append(attrs, slog.String("resource", resource))
	}
	if hint := r.hint(); hint != "" {
		attrs = append(attrs, slog.String("hint", hint))
	}
	if r == reasonNotYetValid && pc != nil {
		attrs = append(attrs, slog.Time("valid_from", pc.notBefore), slog.Time("now", v.cfg.Clock()))
	}
	v.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "jitgrant: RPC denied", attrs...)
}
