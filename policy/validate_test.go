package policy

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseRejects covers every validation error: each case names the line
// and the key the error must carry.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		opts Options
		line int
		key  string // "" for the file as a whole
		msg  string
	}{
		// The file as a whole.
		{name: "yaml syntax", doc: "version: 1\nrules: [\n", line: 2, key: "", msg: "did not find expected node content"},
		{name: "yaml tab", doc: "version: 1\n\tgroups: {}\n", line: 2, key: "", msg: "tab character"},
		{name: "empty file", doc: "", line: 0, msg: "empty file"},
		{name: "comment only", doc: "# nothing\n", line: 0, msg: "empty file"},
		{name: "two documents", doc: edit(nil, "---", "version: 1"), line: 11, msg: "more than one YAML document"},
		{name: "alias", doc: edit(map[int]string{3: `  sre: &m {members: ["spiffe://ex.org/person/*"]}`, 4: `  ops: *m`}), line: 3, msg: "anchors and aliases are not supported"},
		{name: "top level list", doc: "- version: 1\n", line: 1, msg: "must be a mapping, not a list"},
		{name: "unknown top key", doc: edit(nil, "rule: []"), line: 11, key: "rule", msg: "unknown key (want one of: version, max_ttl, groups, permissions, rules)"},
		{name: "duplicate key", doc: edit(nil, "version: 1"), line: 11, key: "version", msg: "duplicate key"},
		{name: "non-string key", doc: edit(nil, "1: x"), line: 11, msg: "keys must be strings"},

		// version and max_ttl.
		{name: "version missing", doc: edit(map[int]string{1: "max_ttl: 1h"}), line: 1, key: "version", msg: "required"},
		{name: "version 2", doc: edit(map[int]string{1: "version: 2"}), line: 1, key: "version", msg: "unsupported version 2"},
		{name: "version string", doc: edit(map[int]string{1: "version: one"}), line: 1, key: "version", msg: "must be an integer"},
		{name: "max_ttl zero", doc: edit(map[int]string{1: "version: 1\nmax_ttl: 0s"}), line: 2, key: "max_ttl", msg: "must be positive"},
		{name: "max_ttl above cap", doc: edit(map[int]string{1: "version: 1\nmax_ttl: 2h"}), line: 2, key: "max_ttl", msg: "2h is above the global cap 1h"},
		{name: "max_ttl above raised cap", doc: edit(map[int]string{1: "version: 1\nmax_ttl: 25h"}), opts: Options{MaxTTLCap: 24 * time.Hour}, line: 2, key: "max_ttl", msg: "25h is above the global cap 24h"},
		{name: "max_ttl not a duration", doc: edit(map[int]string{1: "version: 1\nmax_ttl: 60"}), line: 2, key: "max_ttl", msg: "must be a duration such as 15m or 1h, not the integer 60"},

		// groups.
		{name: "groups not a mapping", doc: edit(map[int]string{2: "groups: [sre]", 3: "", 4: ""}), line: 2, key: "groups", msg: "must be a mapping"},
		{name: "group without members", doc: edit(map[int]string{4: "  ops: {description: nobody}"}), line: 4, key: "groups.ops.members", msg: "a group nobody is in"},
		{name: "group with empty members", doc: edit(map[int]string{4: "  ops: {members: []}"}), line: 4, key: "groups.ops.members", msg: "a group nobody is in"},
		{name: "group with null members", doc: edit(map[int]string{4: "  ops:\n    members:"}), line: 5, key: "groups.ops.members", msg: "a group nobody is in"},
		{name: "group unknown key", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a"], owner: x}`}), line: 4, key: "groups.ops.owner", msg: "unknown key (want one of: members, description)"},
		{name: "group bad name", doc: edit(map[int]string{4: `  "o ps": {members: ["spiffe://ex.org/a"]}`}), line: 4, key: "groups.o ps", msg: "group name must be"},
		{name: "member not spiffe", doc: edit(map[int]string{4: `  ops: {members: ["https://ex.org/a"]}`}), line: 4, key: "groups.ops.members[0]", msg: "not a SPIFFE ID pattern"},
		{name: "member wildcard trust domain", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://*.org/a"]}`}), line: 4, key: "groups.ops.members[0]", msg: "the trust domain cannot be wildcarded"},
		{name: "member bad trust domain", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://EX.org/a"]}`}), line: 4, key: "groups.ops.members[0]", msg: "invalid trust domain"},
		{name: "member prefix wildcard not last", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a*/b"]}`}), line: 4, key: "groups.ops.members[0]", msg: "allowed in the last segment only"},
		{name: "member inner star", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a*b"]}`}), line: 4, key: "groups.ops.members[0]", msg: "* must be a whole segment or end the last segment"},
		{name: "member double star", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/**"]}`}), line: 4, key: "groups.ops.members[0]", msg: "* must be a whole segment"},
		{name: "member empty segment", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a//b"]}`}), line: 4, key: "groups.ops.members[0]", msg: "segment \"\""},
		{name: "member dot segment", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a/.."]}`}), line: 4, key: "groups.ops.members[0]", msg: "segment \"..\""},
		{name: "member duplicate", doc: edit(map[int]string{4: `  ops: {members: ["spiffe://ex.org/a", "spiffe://ex.org/a"]}`}), line: 4, key: "groups.ops.members[1]", msg: "duplicates an earlier member"},
		{name: "member not a string", doc: edit(map[int]string{4: `  ops: {members: [{id: x}]}`}), line: 4, key: "groups.ops.members[0]", msg: "must be a string, not a mapping"},

		// permissions.
		{name: "unknown permission", doc: edit(nil, "permissions: {approve_all: [sre]}"), line: 11, key: "permissions.approve_all", msg: "unknown key (want one of: list_all, revoke_any, export_audit, watch_revocations)"},
		{name: "permission undefined group", doc: edit(nil, "permissions: {list_all: [admins]}"), line: 11, key: "permissions.list_all[0]", msg: `group "admins" is not defined`},
		{name: "permission bad pattern", doc: edit(nil, `permissions: {export_audit: ["spiffe://ex.org/a*/b"]}`), line: 11, key: "permissions.export_audit[0]", msg: "last segment only"},
		{name: "permission not a list", doc: edit(nil, "permissions: {list_all: sre}"), line: 11, key: "permissions.list_all", msg: "must be a list"},

		// rules: structure, name, requesters.
		{name: "rules not a list", doc: edit(map[int]string{5: "rules: {}", 6: "", 7: "", 8: "", 9: "", 10: ""}), line: 5, key: "rules", msg: "must be a list"},
		{name: "rule not a mapping", doc: edit(nil, "  - just a string"), line: 11, key: "rules[1]", msg: "must be a mapping"},
		{name: "rule unknown key", doc: edit(nil, "    approval: []"), line: 11, key: "rules[0].approval", msg: "unknown key"},
		{name: "rule name missing", doc: edit(map[int]string{6: "  - description: x", 10: ""}), line: 6, key: "rules[0].name", msg: "required"},
		{name: "rule name invalid", doc: edit(map[int]string{6: "  - name: a rule"}), line: 6, key: "rules[0].name", msg: "must be 1 to 64 characters"},
		{name: "rule name duplicate", doc: edit(nil, "  - name: r", "    requesters: [sre]", "    scopes: [{method: /a.B/D}]", "    approvals: [{count: 1, from: [sre]}]"), line: 11, key: "rules[1].name", msg: `"r" duplicates the rule at line 6`},
		{name: "requesters missing", doc: edit(map[int]string{7: ""}), line: 6, key: "rules[0].requesters", msg: "required"},
		{name: "requesters empty", doc: edit(map[int]string{7: "    requesters: []"}), line: 7, key: "rules[0].requesters", msg: "required"},
		{name: "requester undefined group", doc: edit(map[int]string{7: "    requesters: [devs]"}), line: 7, key: "rules[0].requesters[0]", msg: `group "devs" is not defined`},
		{name: "requester bad pattern", doc: edit(map[int]string{7: `    requesters: ["spiffe://ex.org/*/x*/y"]`}), line: 7, key: "rules[0].requesters[0]", msg: "last segment only"},
		{name: "requester duplicate", doc: edit(map[int]string{7: "    requesters: [sre, sre]"}), line: 7, key: "rules[0].requesters[1]", msg: "duplicates an earlier entry"},

		// scopes.
		{name: "scopes missing", doc: edit(map[int]string{8: ""}), line: 6, key: "rules[0].scopes", msg: "required"},
		{name: "scope method missing", doc: edit(map[int]string{8: "    scopes: [{resources: [a]}]"}), line: 8, key: "rules[0].scopes[0].method", msg: "required"},
		{name: "scope method invalid", doc: edit(map[int]string{8: "    scopes: [{method: a.B/C}]"}), line: 8, key: "rules[0].scopes[0].method", msg: "does not start with /"},
		{name: "scope method wildcard service", doc: edit(map[int]string{8: "    scopes: [{method: /a.*/C}]"}), line: 8, key: "rules[0].scopes[0].method", msg: "is not an identifier"},
		{name: "scope resource invalid", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resources: [acc*/1]}]"}), line: 8, key: "rules[0].scopes[0].resources[0]", msg: "* must be a whole segment"},
		{name: "scope resource empty segment", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resources: [a//b]}]"}), line: 8, key: "rules[0].scopes[0].resources[0]", msg: "empty segment"},
		{name: "scope resources empty", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resources: []}]"}), line: 8, key: "rules[0].scopes[0].resources", msg: "omit resources to allow any resource"},
		{name: "scope resource duplicate", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resources: [a, a]}]"}), line: 8, key: "rules[0].scopes[0].resources[1]", msg: "duplicates"},
		{name: "scope duplicate", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C}, {method: /a.B/C}]"}), line: 8, key: "rules[0].scopes[1]", msg: "duplicates rules[0].scopes[0]"},
		{name: "scope unknown key", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resource: [a]}]"}), line: 8, key: "rules[0].scopes[0].resource", msg: "unknown key"},
		{name: "scope too many resources", doc: edit(map[int]string{8: "    scopes: [{method: /a.B/C, resources: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]}]"}), line: 8, key: "rules[0].scopes[0].resources", msg: "17 resource patterns, more than 16"},

		// max_ttl, reason.
		{name: "rule max_ttl zero", doc: edit(nil, "    max_ttl: 0s"), line: 11, key: "rules[0].max_ttl", msg: "must be positive"},
		{name: "rule max_ttl negative", doc: edit(nil, "    max_ttl: -5m"), line: 11, key: "rules[0].max_ttl", msg: "must be positive"},
		{name: "rule max_ttl above cap", doc: edit(nil, "    max_ttl: 90m"), line: 11, key: "rules[0].max_ttl", msg: "1h30m is above the global cap 1h"},
		{name: "rule max_ttl above file max_ttl", doc: edit(map[int]string{1: "version: 1\nmax_ttl: 30m"}, "    max_ttl: 45m"), line: 12, key: "rules[0].max_ttl", msg: "45m is above the global cap 30m"},
		{name: "reason pattern does not compile", doc: edit(nil, "    reason: {pattern: '^(INC'}"), line: 11, key: "rules[0].reason.pattern", msg: "does not compile"},
		{name: "reason unknown key", doc: edit(nil, "    reason: {regex: x}"), line: 11, key: "rules[0].reason.regex", msg: "unknown key (want one of: required, pattern)"},
		{name: "reason required not bool", doc: edit(nil, "    reason: {required: yes}"), line: 11, key: "rules[0].reason.required", msg: "must be true or false"},

		// approvals.
		{name: "approvals missing", doc: edit(map[int]string{9: ""}), line: 6, key: "rules[0].approvals", msg: "required"},
		{name: "approvals empty", doc: edit(map[int]string{9: "    approvals: []"}), line: 9, key: "rules[0].approvals", msg: "required"},
		{name: "approval count 0", doc: edit(map[int]string{9: "    approvals: [{count: 0, from: [sre]}]"}), line: 9, key: "rules[0].approvals[0].count", msg: "must be at least 1, not 0"},
		{name: "approval count negative", doc: edit(map[int]string{9: "    approvals:\n      - {count: 1, from: [sre]}\n      - {count: -2, from: [sre]}"}), line: 11, key: "rules[0].approvals[1].count", msg: "must be at least 1, not -2"},
		{name: "approval count above 16", doc: edit(map[int]string{9: "    approvals: [{count: 17, from: [sre]}]"}), line: 9, key: "rules[0].approvals[0].count", msg: "must be at most 16"},
		{name: "approvals above 16 in all", doc: edit(map[int]string{9: "    approvals: [{count: 9, from: [sre]}, {count: 8, from: [sre]}]"}), line: 9, key: "rules[0].approvals", msg: "needs 17 approvers in all"},
		{name: "approval count missing", doc: edit(map[int]string{9: "    approvals: [{from: [sre]}]"}), line: 9, key: "rules[0].approvals[0].count", msg: "required"},
		{name: "approval from missing", doc: edit(map[int]string{9: "    approvals: [{count: 1}]"}), line: 9, key: "rules[0].approvals[0].from", msg: "required"},
		{name: "approval from undefined", doc: edit(map[int]string{9: "    approvals: [{count: 1, from: [sre, admins]}]"}), line: 9, key: "rules[0].approvals[0].from[1]", msg: `group "admins" is not defined`},
		{name: "approval from spiffe id", doc: edit(map[int]string{9: `    approvals: [{count: 1, from: ["spiffe://ex.org/a"]}]`}), line: 9, key: "rules[0].approvals[0].from[0]", msg: "approvers must be a group name"},
		{name: "approval from twice", doc: edit(map[int]string{9: "    approvals: [{count: 1, from: [sre, sre]}]"}), line: 9, key: "rules[0].approvals[0].from[1]", msg: "listed twice"},
		{name: "approval count not int", doc: edit(map[int]string{9: "    approvals: [{count: one, from: [sre]}]"}), line: 9, key: "rules[0].approvals[0].count", msg: "must be an integer"},
		{name: "approval count above fixed members", doc: edit(map[int]string{9: "    approvals: [{count: 2, from: [ops]}]"}), line: 9, key: "rules[0].approvals[0].count", msg: "2 is more than the 1 distinct members of [ops]"},
		{name: "factors infeasible together", doc: edit(map[int]string{9: "    approvals: [{count: 1, from: [ops]}, {count: 1, from: [ops]}]"}), line: 9, key: "rules[0].approvals", msg: "needs 2 distinct approvers from groups of fixed members but they can supply only 1"},
		{name: "only approver is the requester", doc: edit(map[int]string{7: `    requesters: ["spiffe://ex.org/person/alice"]`, 9: "    approvals: [{count: 1, from: [ops]}]"}), line: 7, key: "rules[0].requesters", msg: `requester "spiffe://ex.org/person/alice" could never be approved`},
		{name: "only approver is a requester via group", doc: edit(map[int]string{7: `    requesters: [ops]`, 9: "    approvals: [{count: 1, from: [ops]}]"}), line: 7, key: "rules[0].requesters", msg: "could never be approved"},

		// auto_approve and the rest.
		{name: "auto_approve does not compile", doc: edit(nil, `    auto_approve: 'ttl <= duration("5m") &&'`), line: 11, key: "rules[0].auto_approve", msg: "does not compile: 1:"},
		{name: "auto_approve unknown variable", doc: edit(nil, `    auto_approve: 'user == "x"'`), line: 11, key: "rules[0].auto_approve", msg: "undeclared reference to 'user'"},
		{name: "auto_approve not bool", doc: edit(nil, `    auto_approve: 'ttl + duration("1m")'`), line: 11, key: "rules[0].auto_approve", msg: "must be a bool expression, not google.protobuf.Duration"},
		{name: "auto_approve dyn", doc: edit(nil, `    auto_approve: 'scopes[0].method'`), line: 11, key: "rules[0].auto_approve", msg: "must be a bool expression"},
		{name: "auto_approve empty", doc: edit(nil, `    auto_approve: ' '`), line: 11, key: "rules[0].auto_approve", msg: "empty condition"},
		{name: "auto_approve not a string", doc: edit(nil, `    auto_approve: true`), line: 11, key: "rules[0].auto_approve", msg: "must be a string, not the boolean true"},
		{name: "break_glass not bool", doc: edit(nil, `    break_glass: "true"`), line: 11, key: "rules[0].break_glass", msg: "must be true or false"},
		{name: "pending_timeout zero", doc: edit(nil, `    pending_timeout: 0s`), line: 11, key: "rules[0].pending_timeout", msg: "must be between 1s and 168h"},
		{name: "pending_timeout too long", doc: edit(nil, `    pending_timeout: 200h`), line: 11, key: "rules[0].pending_timeout", msg: "must be between 1s and 168h, not 200h"},
		{name: "max_uses negative", doc: edit(nil, `    max_uses: -1`), line: 11, key: "rules[0].max_uses", msg: "must be between 0 and 4294967295"},
		{name: "max_uses too big", doc: edit(nil, `    max_uses: 4294967296`), line: 11, key: "rules[0].max_uses", msg: "must be between 0 and 4294967295"},
		{name: "deny_ends_request not bool", doc: edit(nil, `    deny_ends_request: 1`), line: 11, key: "rules[0].deny_ends_request", msg: "must be true or false"},
		{name: "ticket_check without reason", doc: edit(nil, `    ticket_check: tracker`), line: 11, key: "rules[0].ticket_check", msg: "needs reason: {required: true, pattern: ...}"},
		{name: "ticket_check reason not required", doc: edit(nil, `    reason: {pattern: '^(INC-[0-9]+)'}`, `    ticket_check: tracker`), line: 12, key: "rules[0].ticket_check", msg: "needs reason: {required: true"},
		{name: "ticket_check pattern without group", doc: edit(nil, `    reason: {required: true, pattern: '^INC-[0-9]+'}`, `    ticket_check: tracker`), line: 12, key: "rules[0].ticket_check", msg: `reason pattern "^INC-[0-9]+" captures no ticket ID`},
		{name: "ticket_check bad name", doc: edit(nil, `    reason: {required: true, pattern: '^(INC-[0-9]+)'}`, `    ticket_check: "a b"`), line: 12, key: "rules[0].ticket_check", msg: `"a b": must be 1 to 64 characters`},
		{name: "ticket_check not a string", doc: edit(nil, `    ticket_check: [x]`), line: 11, key: "rules[0].ticket_check", msg: "must be a string"},
		{name: "on_error unknown", doc: edit(nil, `    on_error: allow`), line: 11, key: "rules[0].on_error", msg: `"allow": want deny or needs_approval`},
		{name: "auto_approve ticket field unknown", doc: edit(nil, `    auto_approve: 'ticket.owner == "x"'`), line: 11, key: "rules[0].auto_approve", msg: "undeclared reference"},
		{name: "auto_approve oncall.now not a string", doc: edit(nil, `    auto_approve: 'oncall.now == "yes"'`), line: 11, key: "rules[0].auto_approve", msg: "does not compile"},
		{name: "description not string", doc: edit(map[int]string{10: "    description: [a]"}), line: 10, key: "rules[0].description", msg: "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc), tt.opts)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.doc)
			}
			if p != nil {
				t.Error("Parse returned a policy with an error")
			}
			// Some line of the error must locate the problem and say it.
			loc := ""
			if tt.line > 0 {
				loc = "line " + strconv.Itoa(tt.line) + ": "
			}
			if tt.key != "" {
				loc += tt.key + ": "
			}
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.Contains(l, loc) && strings.Contains(l[strings.Index(l, loc)+len(loc):], tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no line of the error has %q followed by %q:\n%v", loc, tt.msg, err)
			}
		})
	}
}
