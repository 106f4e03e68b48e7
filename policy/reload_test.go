package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// verdicts are what a policy decides for the example's cases, permissions
// and approvers: two policies with equal verdicts decide alike.
func verdicts(p *Policy, cases []Case) []string {
	ids := []string{
		"spiffe://example.org/person/alice", "spiffe://example.org/person/bob", "spiffe://example.org/person/oncall-eve",
		"spiffe://example.org/person/sec/mallory", "spiffe://example.org/person/carol", "spiffe://example.org/person/dave",
		"spiffe://example.org/auditor/ann", "spiffe://example.org/service/ledger", "spiffe://example.org/workload/payments",
	}
	var out []string
	for _, c := range cases {
		d := p.Decide(c.Request)
		out = append(out, fmt.Sprintf("case %q: %v %q %v %v %v", c.Name, d.Outcome, d.Rule, d.Factors, d.PendingTimeout, d.MaxTTL))
	}
	for _, perm := range []Permission{ListAll, RevokeAny, ExportAudit, WatchRevocations} {
		for _, id := range ids {
			out = append(out, fmt.Sprintf("%s %s: %v", perm, id, p.Allowed(perm, spiffeid.RequireFromString(id))))
		}
	}
	for _, rule := range []string{"ledger-read", "ledger-refund", "ledger-admin-emergency"} {
		for _, id := range ids {
			ok, _ := p.EligibleApprover(rule, spiffeid.RequireFromString("spiffe://example.org/person/dev"), spiffeid.RequireFromString(id))
			out = append(out, fmt.Sprintf("approver %s %s: %v", rule, id, ok))
		}
	}
	return out
}

// TestWatcherPrefixes replays the half-written-file experiment: a real
// policy written in place, one byte at a time, polled after every byte.
// Whatever prefix the watcher sees, the policy in force is never one that
// decides otherwise than the whole file or the policy in force before.
func TestWatcherPrefixes(t *testing.T) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Without its comments and blank lines (a prefix ending in a comment
	// is the prefix before it, and the test runs four times faster).
	var whole []byte
	for _, line := range strings.Split(string(example), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimRight(line, " "); line != "" {
			whole = append(whole, line+"\n"...)
		}
	}
	const denyAll = "version: 1\nmax_ttl: 1h\ngroups: {}\npermissions: {}\nrules: []\n"
	for _, tc := range []struct {
		name string
		// old is the file in force before the write.
		old string
		// data is what is written.
		data []byte
		// stall is how long each prefix stays before the next byte: less
		// than the settle interval (a writer that keeps writing) or more
		// (a writer that stalls at every byte).
		stall int // in tenths of the settle interval
		// wantRefused is whether some prefixes must be refused.
		wantRefused bool
	}{
		// The first real policy over jitd init's deny-all one: the settle
		// interval keeps every prefix out.
		{name: "over deny-all, writing", old: denyAll, data: whole, stall: 3},
		// The same file rewritten in place (an editor saving it again),
		// with the writer stalling longer than the settle interval at every
		// byte: prefixes that parse all remove settings, and are refused.
		{name: "over itself, stalling", old: string(whole), data: whole, stall: 11, wantRefused: true},
		// With a checksum line first, no prefix parses at all, however long
		// it stays, and the whole file applies at once.
		{name: "checksummed over deny-all, stalling", old: denyAll, data: WithChecksum(whole), stall: 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatchEnv(t, nil)
			old := e.write(tc.old)
			if ev := e.w.ReloadNow(); !ev.OK || ev.Hash != old {
				t.Fatalf("initial load: %+v", ev)
			}
			<-e.events
			cases, err := LoadCases("testdata/example_cases.yaml")
			if err != nil {
				t.Fatal(err)
			}
			oldVerdicts, wholeVerdicts := verdicts(e.store.Current(), cases), verdicts(mustParse(t, string(tc.data)), cases)
			if slices.Equal(oldVerdicts, wholeVerdicts) && tc.old != string(tc.data) {
				t.Fatal("the old and the new policy decide alike: the test would prove nothing")
			}

			f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			step := DefaultSettle / 10 * time.Duration(tc.stall)
			loaded, refused, parsedPrefixes := 0, 0, 0
			var checked *Policy // the last policy found to decide like the old or the whole
			check := func(k int) {
				t.Helper()
				for {
					select {
					case ev := <-e.events:
						switch {
						case ev.OK && ev.Hash != hashOf(tc.data):
							loaded++
						case errors.Is(ev.Err, ErrRemoval):
							refused++
							if k == len("version: 1") && !strings.Contains(ev.Err.Error(), "permissions 5") {
								t.Errorf("the prefix %q was refused without naming the permissions it drops: %v", tc.data[:k], ev.Err)
							}
						}
						if ev.OK || errors.Is(ev.Err, ErrRemoval) {
							parsedPrefixes++
						}
					default:
						p := e.store.Current()
						if p == checked {
							return
						}
						got := verdicts(p, cases)
						checked = p
						if !slices.Equal(got, oldVerdicts) && !slices.Equal(got, wholeVerdicts) {
							t.Fatalf("after %d of %d bytes (%q) the policy in force decides like neither the old file nor the whole new one",
								k, len(tc.data), tc.data[max(0, k-40):k])
						}
						return
					}
				}
			}
			check(0)
			for k := 1; k <= len(tc.data); k++ {
				if _, err := f.Write(tc.data[k-1 : k]); err != nil {
					t.Fatal(err)
				}
				e.w.Poll()
				e.clock.Add(step)
				e.w.Poll()
				check(k)
			}
			// Once the file is whole and has settled, it is in force.
			e.clock.Add(DefaultSettle)
			e.w.Poll()
			check(len(tc.data))
			if got := e.store.Current().Hash(); got != hashOf(tc.data) && tc.old != string(tc.data) {
				t.Errorf("the whole file is not in force: %s", got)
			}
			if got := verdicts(e.store.Current(), cases); !slices.Equal(got, wholeVerdicts) {
				t.Error("the policy in force at the end does not decide like the whole file")
			}
			if tc.wantRefused && refused == 0 {
				t.Error("no prefix was refused: the test proves nothing")
			}
			t.Logf("%d bytes: %d prefixes parsed (%d refused, %d loaded and deciding like the whole)", len(tc.data), parsedPrefixes, refused, loaded)
		})
	}
}

// reloadBase is a small policy with permissions and a two-approver rule.
const reloadBase = `version: 1
groups:
  sre: {members: ["spiffe://example.org/person/alice"]}
  sec: {members: ["spiffe://example.org/person/bob"]}
permissions:
  list_all: [sre]
  revoke_any: [sec]
  watch_revocations: ["spiffe://example.org/service/*"]
rules:
  - name: refund
    requesters: ["spiffe://example.org/person/*"]
    scopes: [{method: /bank.v1.Ledger/Refund}]
    approvals:
      - {count: 2, from: [sre, sec]}
`

// TestWatcherReloadRules: what a reload may do without a checksum, with one,
// and on SIGHUP (ReloadNow).
func TestWatcherReloadRules(t *testing.T) {
	base := reloadBase
	appended := base + `  - name: extra
    requesters: ["spiffe://example.org/person/*"]
    scopes: [{method: /bank.v1.Ledger/Extra}]
    approvals: [{count: 1, from: [sre]}]
`
	lowered := strings.Replace(base, "count: 2", "count: 1", 1)
	if lowered == base {
		t.Fatal("the base policy has no count: 2")
	}
	for _, tc := range []struct {
		name string
		file string
		// sighup reloads with ReloadNow instead of polling.
		sighup bool
		// settle is whether the change needs the settle interval.
		settle      bool
		wantOK      bool
		wantRemoved string // a setting Removed must hold; "" for none
		wantErr     error
		wantLog     string
	}{
		{name: "first line only", file: "version: 1\n", settle: true, wantRemoved: `permissions.list_all[] = "sre"`, wantErr: ErrRemoval, wantLog: "level=ERROR msg=\"policy setting removed or changed\""},
		{name: "a rule appended", file: appended, settle: true, wantOK: true},
		{name: "an approval count lowered", file: lowered, settle: true, wantRemoved: `rules[0].approvals[0].count = "2"`, wantErr: ErrRemoval, wantLog: "reload refused"},
		{name: "an approval count lowered, checksummed", file: string(WithChecksum([]byte(lowered))), wantOK: true,
			wantRemoved: `rules[0].approvals[0].count = "2"`, wantLog: "level=WARN msg=\"policy reload removed or changed settings"},
		{name: "checksum does not match", file: string(WithChecksum([]byte(lowered))) + "# edited after\n", settle: true, wantErr: ErrInvalid, wantLog: "line 1: checksum"},
		{name: "SIGHUP, a rule appended", file: appended, sighup: true, wantOK: true},
		{name: "SIGHUP, first line only", file: "version: 1\n", sighup: true, wantRemoved: `rules[0].name = "refund"`, wantErr: ErrRemoval},
		{name: "SIGHUP, checksummed removal", file: string(WithChecksum([]byte("version: 1\n"))), sighup: true, wantOK: true, wantRemoved: `rules[0].name = "refund"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatchEnv(t, nil)
			old := e.write(base)
			e.w.ReloadNow()
			<-e.events
			h := e.write(tc.file)
			var ev LoadEvent
			if tc.sighup {
				ev = e.w.ReloadNow()
				<-e.events
			} else {
				ev0, ok := e.w.Poll()
				if ok == tc.settle {
					t.Fatalf("first poll: event %v, want %v (%+v)", ok, !tc.settle, ev0)
				}
				if ok {
					ev = ev0
					<-e.events
				} else {
					e.clock.Add(DefaultSettle - time.Nanosecond)
					if _, ok := e.w.Poll(); ok {
						t.Fatal("applied before the settle interval")
					}
					e.clock.Add(time.Nanosecond)
					ev = e.poll(true)
				}
			}
			if ev.OK != tc.wantOK || ev.Hash != h || !errors.Is(ev.Err, tc.wantErr) || (tc.wantErr == nil) != (ev.Err == nil) {
				t.Fatalf("event: OK %v, err %v; want OK %v, err %v", ev.OK, ev.Err, tc.wantOK, tc.wantErr)
			}
			if tc.wantRemoved == "" && len(ev.Removed) > 0 || tc.wantRemoved != "" && !slices.Contains(ev.Removed, tc.wantRemoved) {
				t.Errorf("Removed = %q, want it to hold %q", ev.Removed, tc.wantRemoved)
			}
			want := old
			if tc.wantOK {
				want = h
			}
			if got := e.store.Current().Hash(); got != want || ev.Active != want {
				t.Errorf("in force: %s (event says %s), want %s", got, ev.Active, want)
			}
			if !strings.Contains(e.logs.String(), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, e.logs)
			}
			// The outcome is reported once.
			e.clock.Add(DefaultSettle)
			e.poll(false)
		})
	}
}

func TestChecksum(t *testing.T) {
	doc := []byte(reloadBase)
	with := WithChecksum(doc)
	if !strings.HasPrefix(string(with), ChecksumPrefix) || !strings.HasSuffix(string(with), string(doc)) {
		t.Fatalf("WithChecksum:\n%s", with)
	}
	sum := sha256.Sum256(doc)
	if got := Checksum(with); got != hex.EncodeToString(sum[:]) || got != Checksum(doc) {
		t.Errorf("Checksum = %s, want the SHA-256 of the file without its checksum line", got)
	}
	if again := WithChecksum(with); string(again) != string(with) {
		t.Error("WithChecksum of a checksummed file changed it")
	}
	// The checksum line may be anywhere; the hash is of the rest.
	moved := string(doc) + strings.SplitAfter(string(with), "\n")[0]
	p, err := Parse([]byte(moved), Options{})
	if err != nil || !p.checksummed {
		t.Errorf("checksum line last: %v", err)
	}
	if p := mustParse(t, string(doc)); p.checksummed {
		t.Error("a file without a checksum line counts as checksummed")
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"cut short", string(with[:len(with)-20]), "line 1: checksum"},
		{"edited", strings.Replace(string(with), "count: 2", "count: 1", 1), "the file is incomplete, or was edited after the checksum was written"},
		{"two lines", string(with) + strings.SplitAfter(string(with), "\n")[0], "line 1: 2 checksum lines; keep one"},
		{"bad digits", ChecksumPrefix + "xyz\n" + string(doc), `checksum "xyz" does not match`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), Options{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestSettings: what counts as a setting, and what a reload removes.
func TestSettings(t *testing.T) {
	base := mustParse(t, edit(nil))
	for _, tc := range []struct {
		name, file string
		removed    int
	}{
		{"same", edit(nil), 0},
		{"description changed", edit(map[int]string{10: "    description: changed"}), 0},
		{"comment added", "# hello\n" + edit(nil), 0},
		{"rule appended", edit(nil, "  - name: extra", "    requesters: [sre]", "    scopes: [{method: /a.B/C}]", "    approvals: [{count: 1, from: [sre]}]"), 0},
		{"deny-all", "version: 1\n", len(base.settings) - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.file)
			if got := removedSettings(base.settings, p.settings); len(got) != tc.removed {
				t.Errorf("removed %d settings, want %d: %q", len(got), tc.removed, got)
			}
		})
	}
}
