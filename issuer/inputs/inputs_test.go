package inputs

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	secret   = []byte("0123456789abcdef-secret")
	bob      = spiffeid.RequireFromString("spiffe://example.org/person/bob")
	t0       = time.Date(2025, time.January, 6, 10, 0, 0, 0, time.UTC)
	ticketOf = policy.Needs{Rule: "r", TicketChecker: "tracker", TicketID: "INC-42"}
)

func writeSecret(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// endpointServer is a real HTTP server on loopback that checks the request
// signature and answers with answer(body), signed with sign (nil: unsigned).
type endpointServer struct {
	*httptest.Server
	calls atomic.Int32
}

func newServer(t *testing.T, clock *fakeclock.Clock, sign []byte, answer func(req map[string]any) (int, string)) *endpointServer {
	t.Helper()
	s := &endpointServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(secret, body, r.Header.Get(notify.HeaderSignature), clock.Now(), 0); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		status, out := answer(req)
		if status == 0 { // slow: never answers in time
			<-r.Context().Done()
			return
		}
		if sign != nil {
			w.Header().Set(notify.HeaderSignature, notify.Sign(sign, []byte(out), clock.Now()))
		}
		w.WriteHeader(status)
		io.WriteString(w, out)
	}))
	t.Cleanup(s.Close)
	return s
}

func newSource(t *testing.T, clock *fakeclock.Clock, url string, oncall *OnCallSource) *Source {
	t.Helper()
	src, err := New(Config{
		TicketCheckers: []Endpoint{{Name: "tracker", URL: url, SecretFile: writeSecret(t, secret), Timeout: 200 * time.Millisecond, CacheTTL: time.Minute}},
		OnCall:         oncall, Clock: clock.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestTicketCheck(t *testing.T) {
	good := func(map[string]any) (int, string) {
		return 200, `{"ticket": "INC-42", "exists": true, "open": true, "assignee": "bob"}`
	}
	tests := []struct {
		name    string
		sign    []byte
		answer  func(map[string]any) (int, string)
		down    bool
		want    policy.Ticket
		wantErr string
	}{
		{name: "good", sign: secret, answer: good, want: policy.Ticket{ID: "INC-42", Exists: true, Open: true, Assignee: "bob"}},
		{name: "closed", sign: secret, answer: func(map[string]any) (int, string) {
			return 200, `{"ticket": "INC-42", "exists": true, "open": false}`
		}, want: policy.Ticket{ID: "INC-42", Exists: true}},
		{name: "echoes the request", sign: secret, answer: func(req map[string]any) (int, string) {
			ok := req["ticket"] == "INC-42" && req["requester"] == bob.String() && req["rule"] == "r"
			return 200, `{"ticket": "INC-42", "exists": true, "open": ` + map[bool]string{true: "true", false: "false"}[ok] + `}`
		}, want: policy.Ticket{ID: "INC-42", Exists: true, Open: true}},
		{name: "slow", sign: secret, answer: func(map[string]any) (int, string) { return 0, "" }, wantErr: "did not answer within 200ms"},
		{name: "down", sign: secret, answer: good, down: true, wantErr: "could not be reached"},
		{name: "garbage", sign: secret, answer: func(map[string]any) (int, string) { return 200, `<html>ok</html>` }, wantErr: "answer is not the expected JSON"},
		{name: "missing fields", sign: secret, answer: func(map[string]any) (int, string) { return 200, `{"ticket": "INC-42"}` }, wantErr: "answer lacks ticket, exists or open"},
		{name: "other ticket", sign: secret, answer: func(map[string]any) (int, string) {
			return 200, `{"ticket": "INC-1", "exists": true, "open": true}`
		}, wantErr: `answer is about ticket "INC-1", not "INC-42"`},
		{name: "bad signature", sign: []byte("another-secret-of-16+"), answer: good, wantErr: "answer refused: notify: invalid webhook signature: no v1 signature matches"},
		{name: "unsigned", answer: good, wantErr: "answer refused: not signed (no X-Jitgrant-Signature header)"},
		{name: "server error", sign: secret, answer: func(map[string]any) (int, string) { return 503, "" }, wantErr: "answered 503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New(t0)
			srv := newServer(t, clock, tt.sign, tt.answer)
			src := newSource(t, clock, srv.URL+"/check?token=x", nil)
			if tt.down {
				srv.Close()
			}
			got, oc := src.Fetch(context.Background(), bob, ticketOf)
			if oc != nil {
				t.Errorf("on-call = %+v, not asked for", oc)
			}
			if got == nil {
				t.Fatal("no ticket")
			}
			if tt.wantErr != "" {
				if !strings.Contains(got.Err, tt.wantErr) || got.ID != "INC-42" {
					t.Fatalf("ticket = %+v, want Err containing %q", got, tt.wantErr)
				}
				if strings.Contains(got.Err, "127.0.0.1") || strings.Contains(got.Err, "token=x") {
					t.Errorf("the policy (and so the requester) is told the URL: %s", got.Err)
				}
				if n := testutil.ToFloat64(src.metrics.WithLabelValues("ticket", "tracker", "error")); n != 1 {
					t.Errorf("errors counted = %v, want 1", n)
				}
				return
			}
			if *got != tt.want {
				t.Errorf("ticket = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestTicketCache(t *testing.T) {
	clock := fakeclock.New(t0)
	fail := atomic.Bool{}
	srv := newServer(t, clock, secret, func(req map[string]any) (int, string) {
		if fail.Load() {
			return 500, ""
		}
		return 200, `{"ticket": "` + req["ticket"].(string) + `", "exists": true, "open": true}`
	})
	src := newSource(t, clock, srv.URL, nil)
	fetch := func(id string) *policy.Ticket {
		n := ticketOf
		n.TicketID = id
		tk, _ := src.Fetch(context.Background(), bob, n)
		return tk
	}
	steps := []struct {
		name    string
		id      string
		advance time.Duration
		fail    bool
		calls   int32
		wantErr bool
	}{
		{name: "first call asks", id: "INC-42", calls: 1},
		{name: "same ticket within ttl is cached", id: "INC-42", advance: 59 * time.Second, calls: 1},
		{name: "another ticket asks", id: "INC-43", calls: 2},
		{name: "after ttl asks again", id: "INC-42", advance: time.Second, calls: 3},
		{name: "a failure is not cached", id: "INC-44", fail: true, calls: 4, wantErr: true},
		{name: "so the next asks", id: "INC-44", calls: 5},
	}
	for _, st := range steps {
		clock.Add(st.advance)
		fail.Store(st.fail)
		tk := fetch(st.id)
		if got := srv.calls.Load(); got != st.calls {
			t.Errorf("%s: %d calls, want %d", st.name, got, st.calls)
		}
		if (tk.Err != "") != st.wantErr || tk.ID != st.id {
			t.Errorf("%s: ticket %+v", st.name, tk)
		}
	}
	if n := testutil.ToFloat64(src.metrics.WithLabelValues("ticket", "tracker", "cached")); n != 1 {
		t.Errorf("cached = %v, want 1", n)
	}
}

func TestFetchNothingOrUnknown(t *testing.T) {
	clock := fakeclock.New(t0)
	src, err := New(Config{Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tk, oc := src.Fetch(context.Background(), bob, policy.Needs{Rule: "r"})
	if tk != nil || oc != nil {
		t.Errorf("nothing needed, got %+v %+v", tk, oc)
	}
	tk, oc = src.Fetch(context.Background(), bob, policy.Needs{Rule: "r", TicketChecker: "nope", TicketID: "X-1", OnCall: true})
	if tk == nil || !strings.Contains(tk.Err, `no ticket checker named "nope"`) {
		t.Errorf("unknown checker: %+v", tk)
	}
	if oc == nil || !strings.Contains(oc.Err, "no on-call source is configured") {
		t.Errorf("no on-call source: %+v", oc)
	}
}

func TestOnCallHTTP(t *testing.T) {
	tests := []struct {
		name    string
		sign    []byte
		answer  string
		want    policy.OnCall
		wantErr string
	}{
		{name: "on call", sign: secret, answer: `{"requester": "spiffe://example.org/person/bob", "on_call": true, "schedules": ["sre-primary"]}`,
			want: policy.OnCall{Now: true, Schedules: []string{"sre-primary"}}},
		{name: "off call", sign: secret, answer: `{"requester": "spiffe://example.org/person/bob", "on_call": false}`},
		{name: "about someone else", sign: secret, answer: `{"requester": "spiffe://example.org/person/eve", "on_call": true}`, wantErr: "not \"spiffe://example.org/person/bob\""},
		{name: "garbage", sign: secret, answer: `{"on_call": "yes"}`, wantErr: "not the expected JSON"},
		{name: "bad signature", sign: []byte("another-secret-of-16+"), answer: `{"requester": "spiffe://example.org/person/bob", "on_call": true}`, wantErr: "answer refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New(t0)
			srv := newServer(t, clock, tt.sign, func(map[string]any) (int, string) { return 200, tt.answer })
			src := newSource(t, clock, "http://127.0.0.1:1", &OnCallSource{Endpoint: Endpoint{URL: srv.URL, SecretFile: writeSecret(t, secret)}})
			for range 2 { // the second is cached when the first succeeded
				tk, oc := src.Fetch(context.Background(), bob, policy.Needs{Rule: "r", OnCall: true})
				if tk != nil || oc == nil {
					t.Fatalf("Fetch = %+v, %+v", tk, oc)
				}
				if tt.wantErr != "" {
					if !strings.Contains(oc.Err, tt.wantErr) {
						t.Fatalf("on-call = %+v, want Err containing %q", oc, tt.wantErr)
					}
					continue
				}
				if oc.Err != "" || oc.Now != tt.want.Now || strings.Join(oc.Schedules, ",") != strings.Join(tt.want.Schedules, ",") {
					t.Errorf("on-call = %+v, want %+v", oc, tt.want)
				}
			}
			want := int32(1)
			if tt.wantErr != "" {
				want = 2
			}
			if got := srv.calls.Load(); got != want {
				t.Errorf("%d calls, want %d", got, want)
			}
		})
	}
}

const rotaFile = `schedules:
  - name: sre-primary
    rotation:
      start: 2025-01-06T09:00:00Z
      shift: 24h
      members: [spiffe://example.org/person/alice, spiffe://example.org/person/bob]
  - name: dba
    shifts:
      - {member: spiffe://example.org/person/bob, start: 2025-01-07T12:00:00Z, end: 2025-01-07T18:00:00Z}
`

func TestOnCallFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oncall.yaml")
	if err := os.WriteFile(path, []byte(rotaFile), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(t0)
	src, err := New(Config{OnCall: &OnCallSource{File: path}, Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   string
		who  string
		want string // schedules, comma-separated
	}{
		{at: "2025-01-06T08:59:59Z", who: "bob", want: ""}, // before the rotation starts
		{at: "2025-01-06T09:00:00Z", who: "alice", want: "sre-primary"},
		{at: "2025-01-06T09:00:00Z", who: "bob", want: ""},
		{at: "2025-01-07T09:00:00Z", who: "bob", want: "sre-primary"},
		{at: "2025-01-07T12:00:00Z", who: "bob", want: "sre-primary,dba"},
		{at: "2025-01-07T18:00:00Z", who: "bob", want: "sre-primary"}, // end is excluded
		{at: "2025-01-08T10:00:00Z", who: "alice", want: "sre-primary"},
		{at: "2025-01-08T10:00:00Z", who: "carol", want: ""},
	}
	for _, tt := range tests {
		at, _ := time.Parse(time.RFC3339, tt.at)
		clock.Set(at)
		_, oc := src.Fetch(context.Background(), spiffeid.RequireFromString("spiffe://example.org/person/"+tt.who), policy.Needs{OnCall: true})
		if oc.Err != "" || oc.Now != (tt.want != "") || strings.Join(oc.Schedules, ",") != tt.want {
			t.Errorf("%s at %s: %+v, want schedules %q", tt.who, tt.at, oc, tt.want)
		}
	}
}

func TestConfigRejects(t *testing.T) {
	good := writeSecret(t, secret)
	short := writeSecret(t, []byte("short"))
	rota := func(body string) string {
		p := filepath.Join(t.TempDir(), "oncall.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "bad name", cfg: Config{TicketCheckers: []Endpoint{{Name: "a b", URL: "https://x.example", SecretFile: good}}}, want: `ticket_checkers[0].name "a b"`},
		{name: "duplicate", cfg: Config{TicketCheckers: []Endpoint{{Name: "t", URL: "https://x.example", SecretFile: good}, {Name: "t", URL: "https://x.example", SecretFile: good}}}, want: `ticket_checkers[1].name "t": duplicates`},
		{name: "plain http", cfg: Config{TicketCheckers: []Endpoint{{Name: "t", URL: "http://x.example", SecretFile: good}}}, want: "ticket_checkers[0] (t): url: plain http"},
		{name: "short secret", cfg: Config{TicketCheckers: []Endpoint{{Name: "t", URL: "https://x.example", SecretFile: short}}}, want: "secret_file:"},
		{name: "no secret", cfg: Config{TicketCheckers: []Endpoint{{Name: "t", URL: "https://x.example"}}}, want: "secret_file: missing"},
		{name: "cache too long", cfg: Config{TicketCheckers: []Endpoint{{Name: "t", URL: "https://x.example", SecretFile: good, CacheTTL: 2 * time.Hour}}}, want: "cache_ttl 2h0m0s"},
		{name: "oncall name", cfg: Config{OnCall: &OnCallSource{Endpoint: Endpoint{Name: "x", URL: "https://x.example"}}}, want: "oncall: name: not used"},
		{name: "oncall both", cfg: Config{OnCall: &OnCallSource{File: "x", Endpoint: Endpoint{URL: "https://x.example"}}}, want: "give file or url, not both"},
		{name: "oncall file unknown key", cfg: Config{OnCall: &OnCallSource{File: rota("schedules:\n  - name: a\n    people: []\n")}}, want: "line 3: field people not found"},
		{name: "oncall file bad member", cfg: Config{OnCall: &OnCallSource{File: rota("schedules:\n  - name: a\n    rotation: {start: 2025-01-01T00:00:00Z, shift: 24h, members: [bob]}\n")}}, want: `schedules[0].rotation.members[0] "bob": not a SPIFFE ID`},
		{name: "oncall file short shift", cfg: Config{OnCall: &OnCallSource{File: rota("schedules:\n  - name: a\n    rotation: {start: 2025-01-01T00:00:00Z, shift: 1s, members: [spiffe://e.org/a]}\n")}}, want: "shift 1s: must be at least 1m"},
		{name: "oncall file empty window", cfg: Config{OnCall: &OnCallSource{File: rota("schedules:\n  - name: a\n    shifts: [{member: spiffe://e.org/a, start: 2025-01-02T00:00:00Z, end: 2025-01-01T00:00:00Z}]\n")}}, want: "schedules[0].shifts[0]: start and end required, end after start"},
		{name: "oncall file neither", cfg: Config{OnCall: &OnCallSource{File: rota("schedules:\n  - name: a\n")}}, want: "give rotation or shifts"},
		{name: "oncall file missing", cfg: Config{OnCall: &OnCallSource{File: "/nonexistent/oncall.yaml"}}, want: "inputs: oncall: open /nonexistent/oncall.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "inputs: ") {
				t.Errorf("New error %v, want %q", err, tt.want)
			}
		})
	}
}
