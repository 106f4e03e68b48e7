package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
)

// Endpoint is one webhook target as written in jitd's configuration:
//
//	webhooks:
//	  - name: security                 # optional, default the index
//	    url: https://hooks.example.com/jitgrant
//	    secret_file: /etc/jitd/webhook-security.key
//	    events: [break_glass, reviewed, revoked] # optional, default all
//	    timeout: 5s                    # optional, per attempt
type Endpoint struct {
	// Name labels the endpoint in metrics, logs and audit entries: 1 to 64
	// of [a-z0-9_-], unique. Default its index in Config.Endpoints ("0",
	// "1"...).
	Name string `yaml:"name"`
	// URL is where events are POSTed: an absolute https URL, or http to a
	// loopback address. Only its scheme and host are ever logged: a path
	// may hold a token (as Slack's do), and so may userinfo and query.
	URL string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key (its trailing newline is
	// ignored), at least MinSecretLength bytes. Required. It is read by New.
	SecretFile string `yaml:"secret_file"`
	// Events are the kinds delivered (see Kinds); empty means all.
	Events []string `yaml:"events"`
	// Timeout bounds each attempt. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// MinSecretLength is the shortest secret New accepts (e.g. the output of
// "openssl rand -hex 32" is 64 bytes).
const MinSecretLength = 16

// Config configures a Notifier.
type Config struct {
	// Endpoints are the webhook targets; none makes a Notifier that does
	// nothing.
	Endpoints []Endpoint
	// Client sends the requests. Default a client with its own transport.
	// Redirects are never followed, whatever its CheckRedirect: a redirect
	// fails the delivery.
	Client *http.Client
	// MaxAttempts bounds the attempts per event and endpoint. Default 5.
	MaxAttempts int
	// Backoff is the delay before the first retry; it doubles with every
	// retry, with jitter, up to MaxBackoff. Default 500ms.
	Backoff time.Duration
	// MaxBackoff caps a retry delay, including one asked for by
	// Retry-After. Default 30s.
	MaxBackoff time.Duration
	// QueueSize bounds the events waiting per endpoint; an event that finds
	// the queue full is dropped. Default 1024.
	QueueSize int
	// Clock gives the signature timestamps and the Time of an event
	// notified without one. Default time.Now.
	Clock func() time.Time
	// Sleep waits d or until ctx ends (then returning its error), between
	// attempts. It must honour ctx. Default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the notifier's logs. Default slog.Default().
	Logger *slog.Logger
	// Audit, if set, records every event given up on (failed after its
	// last attempt, or dropped) as an audit.ActionWebhookFailed entry. It
	// is called from a goroutine of the notifier, never from Notify, and
	// must honour ctx.
	Audit func(ctx context.Context, rec audit.Record) error
	// Actor is the SPIFFE ID of jitd, the actor of those entries. Required
	// with Audit.
	Actor string
}

// endpoint is a validated Endpoint.
type endpoint struct {
	name    string
	url     string // as configured, secrets included: only for requests
	safeURL string // scheme and host: for logs, metrics and audit
	secret  []byte
	events  []Kind // nil: all
	timeout time.Duration
}

func (e *endpoint) wants(k Kind) bool { return e.events == nil || slices.Contains(e.events, k) }

// validate fills in defaults and checks cfg, returning its endpoints. The
// error lists every problem, naming the field as in
// "notify: endpoints[1].url: ...".
func (cfg *Config) validate() ([]*endpoint, error) {
	var errs []error
	fail := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify: "+field+": "+format, args...))
	}
	eps := make([]*endpoint, len(cfg.Endpoints))
	for i, c := range cfg.Endpoints {
		e := &endpoint{name: c.Name, url: c.URL, timeout: c.Timeout}
		at := func(f string) string { return "endpoints[" + strconv.Itoa(i) + "]." + f }
		if e.name == "" {
			e.name = strconv.Itoa(i)
		} else if !validName(e.name) {
			fail(at("name"), "%q must be 1 to 64 of [a-z0-9_-]", c.Name)
		}
		for j := range i {
			if eps[j].name == e.name {
				fail(at("name"), "%q is also the name of endpoints[%d]", e.name, j)
			}
		}
		var err error
		if e.safeURL, err = checkURL(c.URL); err != nil {
			fail(at("url"), "%v", err)
		}
		if e.secret, err = readSecret(c.SecretFile); err != nil {
			fail(at("secret_file"), "%v", err)
		}
		for j, name := range c.Events {
			k := Kind(name)
			if !slices.Contains(kinds, k) {
				fail(at("events["+strconv.Itoa(j)+"]"), "unknown event %q (want one of %s)", name, kindList())
			}
			if !slices.Contains(e.events, k) {
				e.events = append(e.events, k)
			}
		}
		switch {
		case c.Timeout < 0:
			fail(at("timeout"), "%s is negative", c.Timeout)
		case c.Timeout == 0:
			e.timeout = 5 * time.Second
		}
		eps[i] = e
	}
	for _, c := range []struct {
		name string
		v    int64
	}{{"max_attempts", int64(cfg.MaxAttempts)}, {"backoff", int64(cfg.Backoff)}, {"max_backoff", int64(cfg.MaxBackoff)}, {"queue_size", int64(cfg.QueueSize)}} {
		if c.v < 0 {
			fail(c.name, "%d is negative", c.v)
		}
	}
	if cfg.Audit != nil && !strings.HasPrefix(cfg.Actor, "spiffe://") {
		fail("actor", "%q is not a SPIFFE ID (required with Audit)", cfg.Actor)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.defaults()
	return eps, nil
}

func (cfg *Config) defaults() {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = &c
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkURL validates a webhook URL and returns the form that may be logged.
// The errors never quote the URL, which may hold a token.
func checkURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("missing URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("scheme %q: want https (or http to a loopback address)", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("no host: want an absolute URL such as https://hooks.example.com/jitgrant")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return "", fmt.Errorf("plain http to %s: use https (http is allowed only to a loopback address)", u.Host)
	}
	return safeURL(u), nil
}

// safeURL is u without userinfo, path, query or fragment, any of which may
// hold a secret: "https://hooks.slack.com/…".
func safeURL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecret reads a secret file without its trailing newline. The errors
// name the file but never show its contents.
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("missing: a webhook needs a secret to sign with")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	if len(b) < MinSecretLength {
		return nil, fmt.Errorf("%s holds %d bytes, at least %d (e.g. openssl rand -hex 32)", path, len(b), MinSecretLength)
	}
	return b, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func kindList() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
