package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// Case is one policy test: a request and the decision expected for it (see
// the package doc, "Policy tests").
type Case struct {
	// Name identifies the case; unique in its file.
	Name string
	// Line is where the case starts in its file (0 when built in code).
	Line int
	// Request is what is asked.
	Request Request
	// Expect is what the decision must be.
	Expect Expectation
}

// Expectation is what a case checks of a decision. Unset fields are not
// checked.
type Expectation struct {
	// Outcome must equal the decision's.
	Outcome Outcome
	// Rule, when non-nil, must equal the decision's rule ("" for none).
	Rule *string
	// Factors, when non-nil, must equal the decision's, in order.
	Factors []Factor
	// ReasonContains are substrings that must each occur in one of the
	// decision's reasons.
	ReasonContains []string
}

// CaseResult is the result of running one case.
type CaseResult struct {
	// Name and Line are the case's.
	Name string
	Line int
	// Pass means the decision met every expectation.
	Pass bool
	// Got is the decision.
	Got Decision
	// Diff says what differs, one "field: got X, want Y" per line; empty
	// when Pass.
	Diff string
}

// caseTime is the request time of a case that sets none: a Monday, 10:00
// UTC, so that conditions on working hours behave as in daytime.
func caseTime() time.Time { return time.Date(2025, time.January, 6, 10, 0, 0, 0, time.UTC) }

// ParseCases parses a cases file strictly, reporting every problem with its
// line as a [*FileError]. A case without a time gets 2025-01-06T10:00:00Z.
func ParseCases(data []byte) ([]Case, error) {
	return parseCases("", data)
}

// LoadCases reads and parses the cases file at path.
func LoadCases(path string) ([]Case, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseCases(path, data)
}

func parseCases(file string, data []byte) ([]Case, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy: %s: larger than %d bytes", nameOr(file), MaxFileSize)
	}
	c := &checker{}
	root := c.decodeDocument(data)
	if root == nil {
		return nil, c.err(file)
	}
	top := c.mapping(root, "", "cases")
	list, ok := top["cases"]
	if !ok && top != nil {
		c.addf(root, "cases", "required")
	}
	var cases []Case
	names := make(map[string]int)
	if ok {
		for i, n := range c.seq(list, "cases") {
			cs := c.oneCase(n, index("cases", i))
			if prev, dup := names[cs.Name]; dup && cs.Name != "" {
				c.addf(n, index("cases", i)+".name", "%q duplicates the case at line %d", cs.Name, prev)
			}
			names[cs.Name] = n.Line
			cases = append(cases, cs)
		}
		if len(cases) == 0 && list.Kind == yaml.SequenceNode {
			c.addf(list, "cases", "empty")
		}
	}
	if err := c.err(file); err != nil {
		return nil, err
	}
	return cases, nil
}

func (c *checker) oneCase(n *yaml.Node, path string) Case {
	cs := Case{Line: n.Line, Request: Request{Time: caseTime()}}
	m := c.mapping(n, path, "name", "request", "expect")
	if m == nil {
		return cs
	}
	if v, ok := m["name"]; !ok {
		c.addf(n, join(path, "name"), "required")
	} else {
		cs.Name, _ = c.str(v, join(path, "name"))
	}
	if v, ok := m["request"]; !ok {
		c.addf(n, join(path, "request"), "required")
	} else {
		c.caseRequest(v, join(path, "request"), &cs.Request)
	}
	if v, ok := m["expect"]; !ok {
		c.addf(n, join(path, "expect"), "required")
	} else {
		c.expectation(v, join(path, "expect"), &cs.Expect)
	}
	return cs
}

func (c *checker) caseRequest(n *yaml.Node, path string, req *Request) {
	m := c.mapping(n, path, "requester", "scopes", "ttl", "reason", "time", "break_glass", "use_limit",
		"ticket", "oncall")
	if m == nil {
		return
	}
	if v, ok := m["requester"]; !ok {
		c.addf(n, join(path, "requester"), "required")
	} else if s, ok := c.str(v, join(path, "requester")); ok {
		id, err := spiffeid.FromString(s)
		if err != nil {
			c.addf(v, join(path, "requester"), "%q is not a SPIFFE ID: %v", s, err)
		}
		req.Requester = id
	}
	if v, ok := m["scopes"]; ok {
		for i, sn := range c.seq(v, join(path, "scopes")) {
			sp := index(join(path, "scopes"), i)
			sm := c.mapping(sn, sp, "method", "resources")
			var s grant.Scope
			if mv, ok := sm["method"]; ok {
				s.Method, _ = c.str(mv, join(sp, "method"))
			} else if sm != nil {
				c.addf(sn, join(sp, "method"), "required")
			}
			if rv, ok := sm["resources"]; ok {
				s.Resources, _ = c.strList(rv, join(sp, "resources"))
			}
			req.Scopes = append(req.Scopes, s)
		}
	}
	if v, ok := m["ttl"]; ok {
		req.TTL, _ = c.duration(v, join(path, "ttl"))
	}
	if v, ok := m["reason"]; ok {
		req.Reason, _ = c.str(v, join(path, "reason"))
	}
	if v, ok := m["time"]; ok {
		if v.Kind == yaml.ScalarNode && (v.Tag == "!!timestamp" || v.Tag == "!!str") {
			t, err := time.Parse(time.RFC3339Nano, v.Value)
			if err != nil {
				c.addf(v, join(path, "time"), "must be an RFC 3339 time such as 2025-01-06T10:00:00Z, not %q", v.Value)
			}
			req.Time = t
		} else {
			c.addf(v, join(path, "time"), "must be an RFC 3339 time, not %s", describeNode(v))
		}
	}
	if v, ok := m["break_glass"]; ok {
		req.BreakGlass, _ = c.boolean(v, join(path, "break_glass"))
	}
	if v, ok := m["use_limit"]; ok {
		req.UseLimit, _ = c.uint32Value(v, join(path, "use_limit"))
	}
	c.caseInputs(m, path, req)
}

// caseInputs parses a case request's ticket and oncall: what the ticket
// checker and on-call source would answer.
func (c *checker) caseInputs(m map[string]*yaml.Node, path string, req *Request) {
	if v, ok := m["ticket"]; ok {
		tp := join(path, "ticket")
		tm := c.mapping(v, tp, "id", "exists", "open", "assignee", "error")
		t := &Ticket{Exists: true}
		if f, ok := tm["id"]; ok {
			t.ID, _ = c.str(f, join(tp, "id"))
		}
		if f, ok := tm["exists"]; ok {
			t.Exists, _ = c.boolean(f, join(tp, "exists"))
		}
		if f, ok := tm["open"]; !ok && tm != nil && !hasKey(tm, "error") {
			c.addf(v, join(tp, "open"), "required (true or false), or give error")
		} else if ok {
			t.Open, _ = c.boolean(f, join(tp, "open"))
		}
		if f, ok := tm["assignee"]; ok {
			t.Assignee, _ = c.str(f, join(tp, "assignee"))
		}
		if f, ok := tm["error"]; ok {
			if t.Err, _ = c.str(f, join(tp, "error")); t.Err == "" {
				c.addf(f, join(tp, "error"), "empty: omit error for a check that answered")
			}
		}
		req.Ticket = t
	}
	if v, ok := m["oncall"]; ok {
		op := join(path, "oncall")
		om := c.mapping(v, op, "now", "schedules", "error")
		o := &OnCall{}
		if f, ok := om["now"]; ok {
			o.Now, _ = c.boolean(f, join(op, "now"))
		}
		if f, ok := om["schedules"]; ok {
			o.Schedules, _ = c.strList(f, join(op, "schedules"))
			if len(o.Schedules) > 0 {
				o.Now = true
			}
		}
		if f, ok := om["error"]; ok {
			if o.Err, _ = c.str(f, join(op, "error")); o.Err == "" {
				c.addf(f, join(op, "error"), "empty: omit error for a source that answered")
			}
		}
		req.OnCall = o
	}
}

func hasKey(m map[string]*yaml.Node, k string) bool {
	_, ok := m[k]
	return ok
}

func (c *checker) expectation(n *yaml.Node, path string, e *Expectation) {
	m := c.mapping(n, path, "outcome", "rule", "factors", "reason_contains")
	if m == nil {
		return
	}
	if v, ok := m["outcome"]; !ok {
		c.addf(n, join(path, "outcome"), "required (denied, needs_approval, auto_approved or break_glass)")
	} else if s, ok := c.str(v, join(path, "outcome")); ok {
		o, err := ParseOutcome(s)
		if err != nil {
			c.addf(v, join(path, "outcome"), "%q: want denied, needs_approval, auto_approved or break_glass", s)
		}
		e.Outcome = o
	}
	if v, ok := m["rule"]; ok {
		if s, ok := c.str(v, join(path, "rule")); ok {
			e.Rule = &s
		}
	}
	if v, ok := m["factors"]; ok {
		e.Factors = []Factor{}
		for i, fn := range c.seq(v, join(path, "factors")) {
			fp := index(join(path, "factors"), i)
			fm := c.mapping(fn, fp, "count", "from")
			var f Factor
			if cv, ok := fm["count"]; ok {
				n, _ := c.integer(cv, join(fp, "count"))
				f.Count = int(n)
			} else if fm != nil {
				c.addf(fn, join(fp, "count"), "required")
			}
			if gv, ok := fm["from"]; ok {
				f.Groups, _ = c.strList(gv, join(fp, "from"))
			} else if fm != nil {
				c.addf(fn, join(fp, "from"), "required")
			}
			e.Factors = append(e.Factors, f)
		}
	}
	if v, ok := m["reason_contains"]; ok {
		if v.Kind == yaml.ScalarNode {
			if s, ok := c.str(v, join(path, "reason_contains")); ok {
				e.ReasonContains = []string{s}
			}
		} else {
			e.ReasonContains, _ = c.strList(v, join(path, "reason_contains"))
		}
	}
}

// RunCases decides each case's request and compares the decision with the
// case's expectation.
func (p *Policy) RunCases(cases []Case) []CaseResult {
	out := make([]CaseResult, len(cases))
	for i, cs := range cases {
		if t := cs.Request.Ticket; t != nil && t.ID == "" {
			// A case's ticket is the one its reason names unless it says.
			t2 := *t
			t2.ID = p.Needs(cs.Request).TicketID
			cs.Request.Ticket = &t2
		}
		d := p.Decide(cs.Request)
		diff := cs.Expect.diff(d)
		out[i] = CaseResult{Name: cs.Name, Line: cs.Line, Pass: diff == "", Got: d, Diff: diff}
	}
	return out
}

func (e Expectation) diff(d Decision) string {
	var lines []string
	if d.Outcome != e.Outcome {
		lines = append(lines, fmt.Sprintf("outcome: got %s, want %s", d.Outcome, e.Outcome))
	}
	if e.Rule != nil && d.Rule != *e.Rule {
		lines = append(lines, fmt.Sprintf("rule: got %q, want %q", d.Rule, *e.Rule))
	}
	if e.Factors != nil && !slices.EqualFunc(d.Factors, e.Factors, func(a, b Factor) bool {
		return a.Count == b.Count && slices.Equal(a.Groups, b.Groups)
	}) {
		lines = append(lines, fmt.Sprintf("factors: got %s, want %s", factorsOrNone(d.Factors), factorsOrNone(e.Factors)))
	}
	for _, want := range e.ReasonContains {
		found := false
		for _, r := range d.Reasons {
			if strings.Contains(r, want) {
				found = true
				break
			}
		}
		if !found {
			lines = append(lines, fmt.Sprintf("reasons: none contains %q; got %q", want, d.Reasons))
		}
	}
	return strings.Join(lines, "\n")
}

func factorsOrNone(fs []Factor) string {
	if len(fs) == 0 {
		return "none"
	}
	return factorsPhrase(fs)
}
