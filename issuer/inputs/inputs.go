// Package inputs fetches the external facts a policy rule may need before
// the policy decides (see policy.Needs): whether the ticket a request's
// reason names exists and is open (a ticket checker), and whether the
// requester is on call (an on-call source). The issuer calls
// [Source.Fetch] and passes the answers to policy.Decide, which stays a
// pure function of its input.
//
// # Protocol
//
// A ticket checker and an HTTP on-call source are asked with a POST of a
// JSON body, signed as webhooks are (header X-Jitgrant-Signature,
// "t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">", see notify.Sign) with
// the endpoint's secret. The endpoint must sign its answer the same way,
// with the same secret, over the raw response body; jitd checks it with
// notify.Verify and refuses an unsigned or badly signed answer.
//
//	ticket check:  {"ticket": "INC-42", "requester": "spiffe://…", "rule": "ledger-writeoff"}
//	answer (200):  {"ticket": "INC-42", "exists": true, "open": true, "assignee": "bob"}
//	on-call:       {"requester": "spiffe://…"}
//	answer (200):  {"requester": "spiffe://…", "on_call": true, "schedules": ["sre-primary"]}
//
// The answer must echo the ticket (or requester) asked about. Anything
// else (a timeout, a refused connection, a status other than 200, a body
// that is not that JSON, a bad signature) is a failed check: the rule's
// on_error decides (deny by default), the reason is logged and counted in
// jitgrant_policy_inputs_total{input,source,result="error"}.
//
// Answers are cached for the endpoint's cache_ttl (default 30s) on the
// injected clock, so a second identical check within it makes no call;
// failures are not cached.
//
// # On-call file
//
// Instead of an HTTP endpoint, the on-call source may be a YAML file of
// rotations (iCalendar is not supported yet), read once by New:
//
//	schedules:
//	  - name: sre-primary
//	    rotation:                       # members take turns, one shift each, from start
//	      start: 2025-01-06T09:00:00Z
//	      shift: 168h
//	      members: [spiffe://example.org/person/oncall-bob, spiffe://example.org/person/alice]
//	  - name: dba
//	    shifts:                         # explicit windows, [start, end)
//	      - {member: spiffe://example.org/person/carol, start: 2025-01-06T00:00:00Z, end: 2025-01-13T00:00:00Z}
package inputs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults.
const (
	// DefaultTimeout bounds one call to an endpoint.
	DefaultTimeout = 3 * time.Second
	// DefaultCacheTTL is how long an answer is reused.
	DefaultCacheTTL = 30 * time.Second
	// MaxCacheTTL is the longest cache_ttl accepted.
	MaxCacheTTL = time.Hour
	// maxCacheEntries bounds each cache; a full cache drops expired
	// entries, then everything.
	maxCacheEntries = 4096
	// maxAnswer bounds an answer's body, in bytes.
	maxAnswer = 64 << 10
)

// Endpoint is a signed HTTP endpoint as written in jitd's configuration:
//
//	ticket_checkers:
//	  - name: tracker                  # the name rules give in ticket_check
//	    url: https://tickets.example.com/jitgrant/check
//	    secret_file: /etc/jitd/tracker.key
//	    timeout: 3s                    # optional
//	    cache_ttl: 30s                 # optional
type Endpoint struct {
	// Name is what rules call it (ticket_check); 1 to 64 of
	// [A-Za-z0-9._-], unique. Unused for the on-call source.
	Name string `yaml:"name"`
	// URL is where checks are POSTed: https, or http to a loopback
	// address. Only its scheme and host are logged.
	URL string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key signing the request and the
	// answer (at least notify.MinSecretLength bytes). Required.
	SecretFile string `yaml:"secret_file"`
	// Timeout bounds one call. Default DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is how long an answer is reused. Default DefaultCacheTTL;
	// at most MaxCacheTTL.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// OnCallSource is where on-call status comes from: an HTTP endpoint, or a
// file of rotations (one of the two):
//
//	oncall:
//	  file: /etc/jitd/oncall.yaml      # or url, secret_file, timeout, cache_ttl as a ticket checker
type OnCallSource struct {
	Endpoint `yaml:",inline"`
	// File is a YAML file of rotations (see the package doc).
	File string `yaml:"file"`
}

// Config configures a Source.
type Config struct {
	// TicketCheckers are the checkers rules may name.
	TicketCheckers []Endpoint
	// OnCall, if set, answers on-call status.
	OnCall *OnCallSource
	// Client sends the requests. Default a client with its own transport;
	// redirects are never followed.
	Client *http.Client
	// Clock gives signature times and cache expiry. Default time.Now.
	Clock func() time.Time
	// Logger receives failed checks. Default slog.Default().
	Logger *slog.Logger
}

// Source fetches ticket checks and on-call status. It is safe for
// concurrent use.
type Source struct {
	clock    func() time.Time
	log      *slog.Logger
	client   *http.Client
	checkers map[string]*endpoint
	oncall   *endpoint // HTTP on-call source, or nil
	rota     *rotations
	metrics  *prometheus.CounterVec
}

// endpoint is a checked Endpoint with its secret and cache.
type endpoint struct {
	name, url, safe string
	secret          []byte
	timeout         time.Duration
	cache           *cache
}

// New checks cfg, reads the secrets and the on-call file.
func New(cfg Config) (*Source, error) {
	s := &Source{clock: cfg.Clock, log: cfg.Logger, client: cfg.Client, checkers: make(map[string]*endpoint)}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.client == nil {
		s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c := *s.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	for i, e := range cfg.TicketCheckers {
		if !validName(e.Name) {
			return nil, fmt.Errorf("inputs: ticket_checkers[%d].name %q: must be 1 to 64 characters from [A-Za-z0-9._-]", i, e.Name)
		}
		if s.checkers[e.Name] != nil {
			return nil, fmt.Errorf("inputs: ticket_checkers[%d].name %q: duplicates another checker", i, e.Name)
		}
		ep, err := newEndpoint(e, fmt.Sprintf("ticket_checkers[%d] (%s)", i, e.Name))
		if err != nil {
			return nil, err
		}
		s.checkers[e.Name] = ep
	}
	if o := cfg.OnCall; o != nil {
		switch {
		case o.Name != "":
			return nil, errors.New("inputs: oncall: name: not used for the on-call source; remove it")
		case o.File != "" && o.URL != "":
			return nil, errors.New("inputs: oncall: give file or url, not both")
		case o.File != "":
			r, err := loadRotations(o.File)
			if err != nil {
				return nil, err
			}
			s.rota = r
		default:
			ep, err := newEndpoint(o.Endpoint, "oncall")
			if err != nil {
				return nil, err
			}
			ep.name = "oncall"
			s.oncall = ep
		}
	}
	s.metrics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitgrant_policy_inputs_total",
		Help: "Policy input fetches by input (ticket, oncall), source and result: ok (asked), cached (answered from the cache), error (failed: on_error decides).",
	}, []string{"input", "source", "result"})
	return s, nil
}

func newEndpoint(e Endpoint, what string) (*endpoint, error) {
	safe, err := notify.CheckURL(e.URL)
	if err != nil {
		return nil, fmt.Errorf("inputs: %s: url: %w", what, err)
	}
	secret, err := notify.ReadSecret(e.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("inputs: %s: secret_file: %w", what, err)
	}
	ep := &endpoint{name: e.Name, url: e.URL, safe: safe, secret: secret, timeout: e.Timeout}
	switch {
	case e.Timeout < 0:
		return nil, fmt.Errorf("inputs: %s: timeout %s: must be positive", what, e.Timeout)
	case e.Timeout == 0:
		ep.timeout = DefaultTimeout
	}
	ttl := e.CacheTTL
	switch {
	case ttl < 0 || ttl > MaxCacheTTL:
		return nil, fmt.Errorf("inputs: %s: cache_ttl %s: must be between 0s and %s", what, ttl, MaxCacheTTL)
	case ttl == 0:
		ttl = DefaultCacheTTL
	}
	ep.cache = &cache{ttl: ttl, m: make(map[string]cacheEntry)}
	return ep, nil
}

// Collector returns the source's metrics for a prometheus registry.
func (s *Source) Collector() prometheus.Collector { return s.metrics }

// Fetch returns what need asks for: the ticket check's answer (nil when no
// check is needed or the reason names no ticket) and the requester's
// on-call status (nil when not needed). A failed fetch is returned with
// its Err set, for the rule's on_error; it is logged and counted.
func (s *Source) Fetch(ctx context.Context, requester spiffeid.ID, need policy.Needs) (*policy.Ticket, *policy.OnCall) {
	var t *policy.Ticket
	var o *policy.OnCall
	if need.TicketChecker != "" && need.TicketID != "" {
		t = s.ticket(ctx, requester, need)
	}
	if need.OnCall {
		o = s.onCall(ctx, requester)
	}
	return t, o
}

func (s *Source) count(input, source, result string) {
	s.metrics.WithLabelValues(input, source, result).Inc()
}

// failed counts and logs a failed fetch, and returns what the policy is
// told (it may reach the requester: no URL, no network detail).
func (s *Source) failed(input, source, url, rule string, requester spiffeid.ID, err error) string {
	s.count(input, source, "error")
	attrs := []any{"input", input, "source", source, "rule", rule, "requester", requester.String(), "error", err}
	if url != "" {
		attrs = append(attrs, "url", url)
	}
	if u, ok := err.(*unreachable); ok {
		attrs = append(attrs, "detail", u.err)
	}
	s.log.Warn("inputs: policy input failed; the rule's on_error decides", attrs...)
	return err.Error()
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cache holds answers until their expiry on the source's clock.
type cache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cacheEntry
}

type cacheEntry struct {
	val     any
	expires time.Time
}

func (c *cache) get(key string, now time.Time) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.val, true
}

func (c *cache) put(key string, val any, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCacheEntries {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCacheEntries {
			clear(c.m)
		}
	}
	c.m[key] = cacheEntry{val: val, expires: now.Add(c.ttl)}
}
