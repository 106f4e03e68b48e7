// Package policy decides who may have which just-in-time grant, under which
// conditions, and who must approve it. It reads one YAML file, validates it
// strictly, and answers the issuer's questions: [Policy.Decide] for a new
// request, [Policy.EligibleApprover] and [Policy.Evaluate] for reviews,
// [Policy.Allowed] for API permissions. [Watcher] reloads the file into a
// [Store] when it changes; [Policy.RunCases] runs the expectations of
// `jitctl policy test`.
//
// Everything is denied by default: a request no rule matches, a permission
// nobody is given, an unknown rule, a nil policy.
//
// # File format
//
// A commented example (testdata/example.yaml; a test keeps them equal):
//
//	version: 1              # required; the only version
//	max_ttl: 1h             # optional cap on every rule's max_ttl; default and upper bound:
//	                        # the operator's global cap, 1h unless raised (Options.MaxTTLCap, at most 24h)
//
//	groups:                 # approver groups: name -> members
//	  sre:
//	    description: on-call engineers               # optional
//	    members:                                     # required: SPIFFE IDs or ID patterns
//	      - spiffe://example.org/person/alice
//	      - spiffe://example.org/person/oncall-*     # oncall-bob, oncall-eve, ...
//	  security:
//	    members: ["spiffe://example.org/person/sec/*"]
//	  leads:
//	    members: ["spiffe://example.org/person/carol", "spiffe://example.org/person/dave"]
//
//	permissions:            # issuer API permissions: group names and/or ID patterns; unlisted = nobody
//	  list_all: [sre, security]                          # list everyone's requests and grants
//	  revoke_any: [security]                             # revoke grants held by others
//	  export_audit: ["spiffe://example.org/auditor/*"]   # export the audit log
//	  watch_revocations: ["spiffe://example.org/service/*"]
//
//	rules:                  # the first rule that matches decides (see "Deciding")
//	  - name: ledger-read                            # required, unique, [A-Za-z0-9._-]{1,64}
//	    description: short balance reads in working hours are automatic
//	    requesters: ["spiffe://example.org/person/*"]    # required: ID patterns and/or group names
//	    scopes:                                      # required: what the rule allows
//	      - method: /bank.v1.Ledger/GetBalance       # a full method, or /pkg.Service/* for all its methods
//	        resources: ["accounts/*"]                # optional; omitted = any resource
//	    max_ttl: 30m                                 # optional; default the file's max_ttl
//	    approvals:                                   # required: AND of factors
//	      - {count: 1, from: [sre]}                  # 1 distinct approver from group sre
//	    auto_approve: 'ttl <= duration("5m") && time.getHours("UTC") >= 8 && time.getHours("UTC") < 18'
//	    pending_timeout: 30m                         # optional; default 1h, at most 168h
//	    extend:                                      # optional; without it, grants of this rule cannot be extended
//	      max_total: 45m                             # the grant's whole life; default the rule's max_ttl
//	      max_count: 2                               # extensions per grant; default no limit
//	      auto_approve: 'extension.ttl <= duration("5m") && grant.extensions == 0'   # else the rule's approvals
//
//	  - name: ledger-refund
//	    description: refunds need one SRE and one security engineer
//	    requesters:
//	      - spiffe://example.org/workload/payments
//	      - spiffe://example.org/person/*
//	    scopes:
//	      - method: /bank.v1.Ledger/Refund
//	        resources: ["accounts/*"]
//	    max_ttl: 15m
//	    reason:                                      # optional
//	      required: true                             # an empty reason is denied
//	      pattern: '^(INC|CHG)-[0-9]+: .+'           # a reason given must match (RE2)
//	    approvals:
//	      - {count: 1, from: [sre]}                  # 1 from sre AND 1 other person from security:
//	      - {count: 1, from: [security]}             # a person counts toward one factor only
//	    max_uses: 10                                 # optional: requests must ask for 1 to 10 calls; 0 = no cap
//	    deny_ends_request: true                      # optional; default true
//
//	  - name: ledger-admin-emergency
//	    description: on-call may break glass on the ledger admin API
//	    requesters: ["spiffe://example.org/person/oncall-*", sre]
//	    scopes:
//	      - method: /bank.v1.LedgerAdmin/*
//	    reason: {required: true}
//	    approvals:                                   # after the fact, for break-glass
//	      - {count: 2, from: [leads]}
//	    break_glass: true                            # optional; default false
//	    pending_timeout: 2h
//
//	  - name: ledger-writeoff
//	    description: write-offs need an open ticket; its assignee gets one at once
//	    requesters: ["spiffe://example.org/person/*"]
//	    scopes:
//	      - method: /bank.v1.Ledger/WriteOff
//	        resources: ["accounts/*"]
//	    max_ttl: 15m
//	    reason:
//	      required: true
//	      pattern: '^(?P<ticket>INC-[0-9]+): .+'     # a group named ticket (or the first group) is the ticket ID
//	    ticket_check: tracker                        # optional: jitd's ticket checker must find the ticket open
//	    on_error: deny                               # optional: deny (default) or needs_approval when a check fails
//	    approvals:
//	      - {count: 1, from: [sre]}
//	    auto_approve: 'requester_path == "/person/" + ticket.assignee'   # ticket.id, .exists, .open, .assignee
//
//	  - name: oncall-read
//	    description: on-call SREs get read access auto-approved for 30 minutes
//	    requesters: [sre]
//	    scopes:
//	      - method: /bank.v1.Ledger/ListTransactions
//	    approvals:
//	      - {count: 1, from: [leads]}
//	    auto_approve: 'oncall.now && "sre-primary" in oncall.schedules && ttl <= duration("30m")'
//
// Durations are Go durations ("90s", "15m", "1h30m"). Unknown keys, wrong
// types, duplicate keys, several YAML documents, and anchors or aliases are
// errors.
//
// # ID patterns
//
// Requesters, group members and permissions are SPIFFE ID patterns: a SPIFFE
// ID whose path may use "*" in two ways. A segment "*" matches exactly one
// whole path segment; and the last segment may end in "*" ("oncall-*"),
// matching a last segment that starts with the text before the "*" and has
// at least one character more. Nothing else is a wildcard: the trust domain
// is always literal, there is no multi-segment wildcard, and the number of
// segments must match. So "spiffe://example.org/person/*" matches
// "spiffe://example.org/person/alice" but neither
// "spiffe://example.org/person" nor "spiffe://example.org/person/a/b". A
// pattern without "*" is a fixed ID and matches only itself. Where a list
// takes principals (requesters, permissions), an entry without "spiffe://"
// names a group and stands for its members; approval factors name groups
// only.
//
// # Validation
//
// [Parse] reports every problem of a file at once as a [*FileError], one
// line each, naming the line and the key, e.g.
//
//	policy: example.yaml: line 12: rules[0].approvals[1].count: must be at least 1, not 0
//
// Besides syntax, types and unknown keys, these are errors: a missing
// version; a max_ttl of zero or above the global cap; a group with no
// members ("a group nobody is in"); a reference to an undefined group; an
// invalid ID pattern; a duplicate rule name; a method or resource pattern the
// grant package would reject; a TTL of zero or above the file's max_ttl; a
// reason pattern that does not compile; a rule without approvals; an approval
// count below 1, above 16, or a rule needing more than 16 approvers in all
// (a grant lists at most 16); an auto_approve condition that does not
// compile or is not a bool; a ticket_check whose reason is not required or
// whose pattern captures no ticket ID; and an on_error other than deny or
// needs_approval. When the groups of some factors list fixed IDs
// only, the number of possible approvers is known, and these are errors too:
// a count larger than the distinct members of its groups; factors that
// together need more distinct approvers than the groups can supply (an
// approver counts toward one factor only); and a requester listed by fixed
// ID who could never be approved because the only possible approvers
// include itself. [Policy.Warnings] lists what is legal but suspicious: an
// unused group, a policy without rules, a wildcard requester whose requests
// could never be approved because it is one of too few approvers.
//
// # Deciding
//
// [Policy.Decide] first validates the request (at least one scope, each
// valid for a grant, no duplicates; a positive TTL; a reason of at most
// [MaxReasonLength] bytes of UTF-8; a time). The matching rule is then the
// first in file order whose requesters include the requester and whose
// scopes cover every requested scope. A rule covers a requested scope when
// some rule scope's method pattern includes the requested method ("/p.S/*"
// includes "/p.S/M" and "/p.S/*") and either that rule scope names no
// resources, or every requested resource pattern is covered by one of its
// resource patterns: same number of segments, each equal or "*" in the rule.
// A requested scope without resources asks for every resource, so only a
// rule scope without resources covers it.
//
// The matching rule's checks follow: TTL at most its max_ttl; a reason when
// required; the reason matching the pattern when given; a use limit within
// max_uses (a request for unlimited uses exceeds any cap). A failed check
// denies the request, naming the check; later rules are not tried, so put
// narrow rules before broad ones. Otherwise the outcome is, in order:
// BreakGlass for a break-glass request; AutoApproved when auto_approve
// evaluates to true; NeedsApproval with the rule's factors in every other
// case, including a condition that fails to evaluate (fail closed).
//
// Break-glass requests only consider rules with break_glass: true: such a
// rule matches both normal and break-glass requests, other rules only normal
// ones. Break-glass is loud: the grant is issued at once, flagged, audited,
// and listed for review after the fact by the rule's approvers (the
// decision's Factors). auto_approve is quiet: when its condition holds the
// grant is issued without review. A rule may have both.
//
// # Auto-approve conditions
//
// auto_approve is a CEL expression of type bool, compiled once at Parse, and
// evaluated with a cost limit of [CELCostLimit] (exceeding it is an
// evaluation error). Its variables:
//
//	requester       string     "spiffe://example.org/person/alice"
//	requester_path  string     "/person/alice"
//	scopes          list(map)  each {"method": string, "resources": list(string)}
//	ttl             duration   compare with duration("5m")
//	reason          string
//	time            timestamp  the request's time, e.g. time.getHours("UTC") < 18
//	use_limit       int        0 = unlimited
//	ticket.id       string     the ticket the reason names (rules with ticket_check)
//	ticket.exists   bool       the ticket checker's answer
//	ticket.open     bool
//	ticket.assignee string     "" when the checker does not say
//	oncall.now      bool       the requester is on call at the request's time
//	oncall.schedules list(string) the schedules they are on call for
//
// # Extensions
//
// A rule's optional extend: block lets the holder of an issued grant push
// its end later ([Policy.DecideExtend]); a rule without one refuses every
// extension. Its keys: max_total (the grant's whole life, start to new
// end; default the rule's max_ttl, at most the global max_ttl), max_count
// (extensions per grant; 0 or absent: no limit), approvals (factors as a
// rule's, for extensions; default the rule's own: see
// [Policy.EvaluateExtension]) and auto_approve, a CEL condition over:
//
//	requester        string    the holder's SPIFFE ID
//	grant.id         string
//	grant.total      duration  the grant's life once extended
//	grant.extensions int       extensions approved so far
//	extension.ttl    duration  how much later the grant would end
//	extension.reason string
//	time             timestamp the time of the extension request
//
// An extension the condition does not approve needs those approvals.
//
// # Ticket checks and on-call
//
// A rule with ticket_check names a ticket checker configured in jitd. Its
// reason must be required and its pattern must capture the ticket ID (the
// group named "ticket", or the first group). The issuer asks
// [Policy.Needs] what the matching rule needs, fetches it (the ticket
// check; the on-call status when the condition reads oncall), and passes
// it in [Request.Ticket] and [Request.OnCall], so that Decide stays a pure
// function of its input. After the rule's other checks, a ticket that does
// not exist or is not open denies the request, naming the ticket. A check
// that failed, was not made, or answered about another ticket, and an
// on-call status that is unknown, follow the rule's on_error: deny (the
// default) or needs_approval (the request waits for approval, never
// auto-approved).
//
// # Approvals
//
// A rule's approvals are an AND of factors, each "count distinct approvers
// from any of the groups in from". The requester never approves its own
// request; one person counts once per request, by their first review, and
// toward one factor only. [Policy.Evaluate] assigns approvers to factors so
// as to satisfy the most (a maximum bipartite matching), so an approver in
// the groups of two factors counts where needed. A denial by an eligible
// approver ends the request unless the rule says deny_ends_request: false.
// pending_timeout is how long a request may wait for its approvals.
//
// # Reloading
//
// A [Store] holds the policy in force behind an atomic pointer. A [Watcher]
// polls the file (modification time and size, then SHA-256 of the content),
// waits for a changed file to stay unchanged for a settle interval, parses
// it and swaps it in; a file that does not parse leaves the old policy in
// force. A file caught half-written often parses (its first line alone is a
// valid deny-all policy), so a reload that would remove or change any
// setting of the policy in force is refused ([RemovalError]) unless the
// file carries a matching checksum line ([ChecksumPrefix], [WithChecksum]);
// a checksummed file applies without the wait. A version or revision number
// in the file could not play that part: a half-written file keeps its first
// lines. Every load, good, bad or refused, is logged, counted by a
// [Collector], and reported as a [LoadEvent] with the file's hash for the
// audit log. [Watcher.ReloadNow] forces a load (SIGHUP) without the wait,
// under the same checks.
//
// # Policy tests
//
// `jitctl policy test FILE CASES` runs a cases file through [ParseCases] and
// [Policy.RunCases]:
//
//	cases:
//	  - name: refund needs two
//	    request:
//	      requester: spiffe://example.org/workload/payments
//	      scopes: [{method: /bank.v1.Ledger/Refund, resources: [accounts/1]}]
//	      ttl: 10m
//	      reason: "INC-1: x"
//	      time: 2025-01-06T10:00:00Z     # optional, this by default
//	      break_glass: false             # optional
//	      use_limit: 0                   # optional
//	      ticket: {open: true, assignee: bob}     # optional: the checker's answer; id defaults to
//	                                              # the reason's, exists to true; or {error: "down"}
//	      oncall: {now: true, schedules: [sre]}   # optional: the on-call source's; or {error: "..."}
//	    expect:
//	      outcome: needs_approval        # denied | needs_approval | auto_approved | break_glass
//	      rule: ledger-refund            # optional; "" expects no rule
//	      factors: [{count: 1, from: [sre]}, {count: 1, from: [security]}]   # optional
//	      reason_contains: max_ttl       # optional; a string or a list
package policy
