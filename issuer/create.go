package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits on a new request.
const (
	MaxReasonLength = 1024
	MaxUseLimit     = 1_000_000
	MaxCSRSize      = 8 << 10
)

// CreateInput is a new access request.
type CreateInput struct {
	Scopes     []grant.Scope
	TTL        time.Duration
	Reason     string
	Start      time.Time // zero: as soon as approved
	CSR        []byte    // DER PKCS#10; nil: the issuer makes the key pair
	DryRun     bool
	BreakGlass bool
	UseLimit   uint32
}

// Validate checks the input on its own, naming the first bad field.
func (in *CreateInput) Validate() error {
	if len(in.Scopes) == 0 {
		return fmt.Errorf("%w: scopes: at least one scope is required", ErrInvalid)
	}
	if len(in.Scopes) > grant.MaxScopes {
		return fmt.Errorf("%w: scopes: %d scopes, at most %d", ErrInvalid, len(in.Scopes), grant.MaxScopes)
	}
	for i, s := range in.Scopes {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: scopes[%d]: %s", ErrInvalid, i, strings.TrimPrefix(err.Error(), "grant: invalid: "))
		}
	}
	if in.TTL <= 0 {
		return fmt.Errorf("%w: ttl: %s is not positive", ErrInvalid, in.TTL)
	}
	if len(in.Reason) > MaxReasonLength {
		return fmt.Errorf("%w: reason: %d bytes, at most %d", ErrInvalid, len(in.Reason), MaxReasonLength)
	}
	if !utf8.ValidString(in.Reason) || strings.ContainsFunc(in.Reason, func(r rune) bool { return r < ' ' && r != '\t' }) {
		return fmt.Errorf("%w: reason: not printable UTF-8", ErrInvalid)
	}
	if in.UseLimit > MaxUseLimit {
		return fmt.Errorf("%w: use_limit: %d, at most %d", ErrInvalid, in.UseLimit, MaxUseLimit)
	}
	if len(in.CSR) > MaxCSRSize {
		return fmt.Errorf("%w: csr: %d bytes, at most %d", ErrInvalid, len(in.CSR), MaxCSRSize)
	}
	if in.BreakGlass && !in.Start.IsZero() {
		return fmt.Errorf("%w: start_time: a break-glass grant starts at once", ErrInvalid)
	}
	return nil
}

// parseCSR checks a CSR for the caller: a valid signature, exactly one URI
// SAN and it is the caller's ID, no other names.
func parseCSR(der []byte, caller spiffeid.ID) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: csr: %v", ErrInvalid, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: csr: signature: %v", ErrInvalid, err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != caller.String() {
		return nil, fmt.Errorf("%w: csr: its URI SAN must be the caller's SPIFFE ID %s (one URI SAN, got %d)", ErrInvalid, caller, len(csr.URIs))
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {
		return nil, fmt.Errorf("%w: csr: only a URI SAN is allowed", ErrInvalid)
	}
	// Refused now rather than at issuance, where the request would already
	// be approved and the sweeper would retry it on every pass.
	if err := ca.CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: csr: public key: %v", ErrInvalid, err)
	}
	return csr, nil
}

// Create takes a new request from caller. It returns the policy's decision
// and, unless the request is a dry run or denied, the stored request (already
// issued when auto-approved or break-glass and due now).
func (is *Issuer) Create(ctx context.Context, caller spiffeid.ID, in CreateInput) (*Request, policy.Decision, error) {
	if err := in.Validate(); err != nil {
		return nil, policy.Decision{}, err
	}
	if in.TTL < is.cfg.MinTTL {
		return nil, policy.Decision{}, fmt.Errorf("%w: ttl: %s is shorter than the minimum of %s", ErrInvalid, in.TTL, is.cfg.MinTTL)
	}
	now := is.now()
	if !in.Start.IsZero() {
		if in.Start.Before(now.Add(-time.Minute)) {
			return nil, policy.Decision{}, fmt.Errorf("%w: start_time: %s is in the past", ErrInvalid, in.Start.Format(time.RFC3339))
		}
		if in.Start.After(now.Add(is.cfg.MaxStartDelay)) {
			return nil, policy.Decision{}, fmt.Errorf("%w: start_time: more than %s ahead", ErrInvalid, is.cfg.MaxStartDelay)
		}
		if left := in.Start.Add(in.TTL).Sub(now); left < is.cfg.MinTTL {
			return nil, policy.Decision{}, fmt.Errorf("%w: start_time: %s is in the past, and the grant would end %s from now, less than the minimum ttl of %s", ErrInvalid, in.Start.Format(time.RFC3339), left, is.cfg.MinTTL)
		}
	}
	var csr *x509.CertificateRequest
	if in.CSR != nil {
		var err error
		if csr, err = parseCSR(in.CSR, caller); err != nil {
			return nil, policy.Decision{}, err
		}
	}
	p, err := is.policy()
	if err != nil {
		return nil, policy.Decision{}, err
	}
	preq := policy.Request{
		Requester: caller, Scopes: in.Scopes, TTL: in.TTL, Reason: in.Reason,
		Time: now, BreakGlass: in.BreakGlass, UseLimit: in.UseLimit,
	}
	if need := p.Needs(preq); is.cfg.Inputs != nil && (need.TicketID != "" || need.OnCall) {
		// Fetched before deciding, so that the decision is a pure function
		// of its input.
		preq.Ticket, preq.OnCall = is.cfg.Inputs.Fetch(ctx, caller, need)
	}
	d := p.Decide(preq)
	if in.DryRun {
		return nil, d, nil
	}
	if d.Outcome == policy.Denied {
		is.metrics.denied.Add(1)
		// A refused request is stored nowhere, but the attempt is audited.
		rec := record(caller, audit.ActionRequestDenied, map[string]string{
			"stage": "policy", "rule": d.Rule, "why": strings.Join(d.Reasons, "; "), "scopes": scopeList(in.Scopes),
		})
		if err := is.cfg.Store.Audit(ctx, rec); err != nil {
			return nil, d, err
		}
		if d.Rule == "" {
			return nil, d, fmt.Errorf("%w: no policy rule allows this request (see the decision's reasons with --dry-run)", ErrPermission)
		}
		return nil, d, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(d.Reasons, "; "))
	}
	id, err := newID(now)
	if err != nil {
		return nil, d, err
	}
	r := &Request{
		ID: id, Requester: caller.String(), State: StatePending, Scopes: in.Scopes, TTL: in.TTL,
		Reason: in.Reason, UseLimit: in.UseLimit, Rule: d.Rule, Factors: factors(d.Factors),
		CreateTime: now, UpdateTime: now, ReviewDeadline: now.Add(d.PendingTimeout),
		StartTime: in.Start, Version: 1,
	}
	var pub crypto.PublicKey
	if csr != nil {
		// The CSR's SubjectPublicKeyInfo, as parsed and checked above.
		r.PublicKey, pub = bytes.Clone(csr.RawSubjectPublicKeyInfo), csr.PublicKey
	}
	details := map[string]string{
		"rule": d.Rule, "scopes": scopeList(in.Scopes), "ttl": in.TTL.String(), "reason": in.Reason,
		"outcome": d.Outcome.String(),
	}
	if in.UseLimit > 0 {
		details["use_limit"] = strconv.FormatUint(uint64(in.UseLimit), 10)
	}
	action := audit.ActionRequestCreated
	switch d.Outcome {
	case policy.NeedsApproval:
		r.Missing = r.Factors
	case policy.AutoApproved:
		r.State = StateApproved
	case policy.BreakGlass:
		r.State, r.BreakGlass, r.NeedsReview = StateApproved, true, true
		r.Missing = r.Factors // what its review after the fact needs
		action = audit.ActionBreakGlass
		is.metrics.breakGlass.Add(1)
		is.cfg.Logger.Warn("issuer: break-glass request", "request", id, "requester", caller.String(), "reason", in.Reason)
	}
	rec := record(caller, action, details)
	rec.Subject = r.ID
	r, err = is.commitNew(ctx, r, rec, pub)
	return r, d, err
}

// commitNew commits the new request r with rec. An approved request due
// now is issued in the same commit (one synced write instead of two), its
// grant.issued entry right after rec, and watchers see both changes in
// turn; the issued request is returned. If issuing fails, r is stored
// ended instead (see endUnissuable), and returned with the error.
func (is *Issuer) commitNew(ctx context.Context, r *Request, rec audit.Record, pub crypto.PublicKey) (*Request, error) {
	steps, recs := []*Request{r}, []audit.Record{rec}
	var issueErr error
	if issuable(r, is.now()) {
		next := r.clone()
		next.Version++
		irec, err := is.issue(next, pub)
		if err != nil {
			next = r.clone()
			next.Version++
			irec, issueErr = is.endUnissuable(next, err), err
			is.cfg.Logger.Warn("issuer: approved request could not be issued; ended", "request", r.ID, "state", next.State, "error", err)
		}
		next.UpdateTime = is.now()
		irec.Subject = next.ID
		steps, recs = append(steps, next), append(recs, irec)
	}
	final := steps[len(steps)-1]
	if err := is.cfg.Store.Put(ctx, nil, final, recs...); err != nil {
		return nil, err
	}
	for i, step := range steps {
		is.committed(step, recs[i].Action)
	}
	if len(steps) > 1 && issueErr == nil {
		is.metrics.issued.Add(1)
	}
	return final, issueErr
}

func factors(fs []policy.Factor) []Factor {
	out := make([]Factor, 0, len(fs))
	for _, f := range fs {
		out = append(out, Factor{Count: f.Count, Groups: append([]string(nil), f.Groups...)})
	}
	return out
}

// scopeList renders scopes for an audit entry: "method[res,res] method".
func scopeList(scopes []grant.Scope) string {
	var b strings.Builder
	for i, s := range scopes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.Method)
		if len(s.Resources) > 0 {
			b.WriteString("[" + strings.Join(s.Resources, ",") + "]")
		}
	}
	return b.String()
}
