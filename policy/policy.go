package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/jitgrant/jitgrant/grant"
)

// Limits and defaults. Parse rejects files beyond the limits.
const (
	// DefaultMaxTTLCap is the global cap on any rule's max_ttl unless the
	// operator raises it with [Options.MaxTTLCap].
	DefaultMaxTTLCap = time.Hour
	// MaxTTLCapLimit is the highest cap an operator may set.
	MaxTTLCapLimit = 24 * time.Hour
	// DefaultPendingTimeout is how long a request may wait for review when
	// a rule does not say.
	DefaultPendingTimeout = time.Hour
	// MaxPendingTimeout is the longest pending_timeout a rule may set.
	MaxPendingTimeout = 7 * 24 * time.Hour
	// MaxFileSize is the largest policy or cases file read, in bytes.
	MaxFileSize = 1 << 20
	// MaxReasonLength is the longest reason a request may give, in bytes.
	MaxReasonLength = 1024
	// MaxApprovalsPerRule is the most approvers a rule may require in all
	// (the sum of its factors' counts): a grant lists at most that many.
	MaxApprovalsPerRule = grant.MaxApprovers
	// CELCostLimit caps the runtime cost of one auto_approve evaluation;
	// a condition that exceeds it is an evaluation error (not approved).
	CELCostLimit = 100_000

	maxNameLength  = 64
	maxIDLength    = 2048 // as the SPIFFE ID spec allows
	maxExprLength  = 4096
	maxRegexLength = 1024
)

// Errors callers branch on.
var (
	// ErrInvalid is wrapped by every error about the content of a policy
	// or cases file; the error is a [*FileError] listing each problem.
	ErrInvalid = errors.New("policy: invalid file")
	// ErrUnknownRule means a rule name is not in the policy, for example
	// because a reload removed it. The issuer must fail closed.
	ErrUnknownRule = errors.New("policy: unknown rule")
)

// Options are the operator's settings, from the command line rather than
// the file.
type Options struct {
	// MaxTTLCap is the global cap on any TTL the file may allow: the file's
	// max_ttl, and every rule's, must be at most this. Zero means
	// [DefaultMaxTTLCap]; it may not exceed [MaxTTLCapLimit].
	MaxTTLCap time.Duration
}

func (o Options) maxTTLCap() (time.Duration, error) {
	switch {
	case o.MaxTTLCap == 0:
		return DefaultMaxTTLCap, nil
	case o.MaxTTLCap < 0 || o.MaxTTLCap > MaxTTLCapLimit:
		return 0, fmt.Errorf("policy: Options.MaxTTLCap %v: must be between 1s and %v", o.MaxTTLCap, MaxTTLCapLimit)
	case o.MaxTTLCap < time.Second:
		return 0, fmt.Errorf("policy: Options.MaxTTLCap %v: must be between 1s and %v", o.MaxTTLCap, MaxTTLCapLimit)
	}
	return o.MaxTTLCap, nil
}

// Policy is a parsed, validated policy file. It is immutable and safe for
// concurrent use; a reload builds a new one (see [Store]).
type Policy struct {
	hash     string
	maxTTL   time.Duration
	groups   map[string]*group
	perms    map[Permission]principals
	rules    []*rule
	byName   map[string]*rule
	index    ruleIndex
	warnings []string
	// settings are the file's settings (settingsOf); checksummed means the
	// file carries a matching checksum line (ChecksumPrefix).
	settings    []string
	checksummed bool
}

// group is a named set of ID patterns.
type group struct {
	name    string
	members []idPattern
}

// rule is one parsed rule; the string fields ending in Line are
// explanation lines built once at Parse so that Decide need not format.
type rule struct {
	name           string
	requesters     principals
	reqPrefix      string // common literal prefix of every requester pattern
	scopes         []grant.Scope
	maxTTL         time.Duration
	reasonRequired bool
	reasonRE       *regexp.Regexp
	factors        []factor
	autoSrc        string
	auto           cel.Program
	breakGlass     bool
	pendingTimeout time.Duration
	maxUses        uint32
	denyEnds       bool
	ticketCheck    string      // the ticket checker's name; "" for none
	usesOnCall     bool        // auto_approve reads oncall
	onError        string      // onErrorDeny or onErrorNeedsApproval
	extend         *extendRule // nil: extensions refused

	matchLines []string // per requester: `rule "x" matched: requester matches "..."`
	needsLine  string   // "needs 1 approver from [sre] and 1 from [security]"
	autoLine   string   // "auto-approved: auto_approve condition is true: ..."
	noAutoLine string   // "auto_approve condition is false: ..."
}

// factor is "count distinct approvers from any of groups".
type factor struct {
	count  int
	names  []string
	groups []*group
}

// Parse parses and validates a policy file (see the package doc). It
// reports every problem it finds, each with its line, as a [*FileError]
// wrapping [ErrInvalid].
func Parse(data []byte, opts Options) (*Policy, error) {
	return parse("", data, opts)
}

// Load reads and parses the policy file at path.
func Load(path string, opts Options) (*Policy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, data, opts)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy: %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Hash returns the lowercase hex SHA-256 of the file's bytes, as audited on
// every load.
func (p *Policy) Hash() string {
	if p == nil {
		return ""
	}
	return p.hash
}

// MaxTTL returns the policy's global cap on TTLs: the file's max_ttl.
func (p *Policy) MaxTTL() time.Duration {
	if p == nil {
		return 0
	}
	return p.maxTTL
}

// RuleNames returns the rule names in file order.
func (p *Policy) RuleNames() []string {
	if p == nil {
		return nil
	}
	names := make([]string, len(p.rules))
	for i, r := range p.rules {
		names[i] = r.name
	}
	return names
}

// Warnings returns things that are legal but probably unintended, such as
// a group no rule or permission uses. `jitctl policy check` prints them.
func (p *Policy) Warnings() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.warnings...)
}

func (p *Policy) rule(name string) (*rule, error) {
	if p == nil {
		return nil, fmt.Errorf("%w %q: no policy loaded", ErrUnknownRule, name)
	}
	r, ok := p.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownRule, name)
	}
	return r, nil
}
