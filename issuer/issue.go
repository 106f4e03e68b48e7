package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// issueIfDue issues an approved request whose start has come: it becomes
// ISSUED, valid until start+TTL, and a CSR-based request gets its certificate
// now. A request that cannot be issued (its end has passed, or its
// certificate cannot be minted) is ended instead (see endUnissuable), so
// that nobody retries it forever. It returns the request as it stands after
// the attempt (another caller, such as the sweeper, may have issued it
// first).
func (is *Issuer) issueIfDue(ctx context.Context, known *Request) (*Request, error) {
	var unissuable error
	r, err := is.changeFrom(ctx, known, func(r *Request) (audit.Record, error) {
		unissuable = nil
		if !issuable(r, is.now()) {
			return audit.Record{}, errSkip
		}
		approved := r.clone()
		rec, err := is.issueStored(r)
		if err == nil {
			return rec, nil
		}
		*r, unissuable = *approved, err
		return is.endUnissuable(r, err), nil
	})
	if errors.Is(err, errSkip) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if unissuable != nil {
		is.cfg.Logger.Warn("issuer: approved request could not be issued; ended", "request", r.ID, "state", r.State, "error", unissuable)
		return r, nil
	}
	is.metrics.issued.Add(1)
	return r, nil
}

// issuable reports whether r is approved and its start has come by now.
func issuable(r *Request, now time.Time) bool {
	return r.State == StateApproved && !r.StartTime.After(now)
}

// issueStored is issue for a stored request, whose CSR's public key is kept
// in r.PublicKey.
func (is *Issuer) issueStored(r *Request) (audit.Record, error) {
	pub, err := parsePublicKey(r)
	if err != nil {
		return audit.Record{}, err
	}
	return is.issue(r, pub)
}

// parsePublicKey parses r's stored CSR public key; nil when it has none.
func parsePublicKey(r *Request) (crypto.PublicKey, error) {
	if r.PublicKey == nil {
		return nil, nil
	}
	pub, err := x509.ParsePKIXPublicKey(r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issuer: request %s: stored public key: %w", r.ID, err)
	}
	return pub, nil
}

// issue turns r, an issuable request, into an issued grant: valid from its
// start (now, if it has none) for its TTL, with its certificate minted for
// pub when the request has a CSR (r.PublicKey, of which pub is the parsed
// form). It returns the grant.issued record; the caller commits both.
//
// The grant ends on a whole second (start+TTL, truncated), the precision of
// a certificate's NotAfter, so that each of its certificates ends exactly
// with it: none is left valid for a fraction of the grant's last second,
// and none has to be minted again for it.
func (is *Issuer) issue(r *Request, pub crypto.PublicKey) (audit.Record, error) {
	now := is.now()
	r.State = StateIssued
	if r.StartTime.IsZero() {
		r.StartTime = now
	}
	r.NotAfter = r.StartTime.Add(r.TTL).Truncate(time.Second)
	if !r.NotAfter.After(now) {
		return audit.Record{}, fmt.Errorf("%w: request %s: its grant would have ended at %s, before it could be issued", ErrState, r.ID, r.NotAfter.Format(time.RFC3339))
	}
	details := map[string]string{"not_after": r.NotAfter.Format(time.RFC3339)}
	if r.PublicKey != nil {
		if pub == nil { // mint would make a key pair of its own
			return audit.Record{}, fmt.Errorf("issuer: request %s: public key not parsed", r.ID)
		}
		svid, err := is.mint(r, pub)
		if err != nil {
			return audit.Record{}, err
		}
		r.CertChain = chainDER(svid)
		r.Serial = fmt.Sprintf("%x", svid.Certificates[0].SerialNumber)
		r.NotAfter = svid.Certificates[0].NotAfter
		details["serial"] = r.Serial
		details["not_after"] = r.NotAfter.Format(time.RFC3339)
	}
	if r.BreakGlass {
		details["break_glass"] = "true"
	}
	is.planExpiring(r, now)
	return record(is.cfg.ID, audit.ActionGrantIssued, details), nil
}

// endUnissuable ends r, an approved request that could not be issued
// because of cause, and returns the audit record of its end: EXPIRED when
// the grant's end has passed, REVOKED by the issuer otherwise, with
// EndCause EndUnissuable either way. The requester reads the cause in
// EndReason, unless it is internal (a failure to mint), which only the log
// and the audit entry tell.
func (is *Issuer) endUnissuable(r *Request, cause error) audit.Record {
	why := "the issuer could not mint its certificate (see the issuer's log)"
	if errors.Is(cause, ErrState) || errors.Is(cause, ErrInvalid) {
		why = cause.Error()
		for _, sentinel := range []error{ErrState, ErrInvalid} {
			why = strings.TrimPrefix(why, sentinel.Error()+": ")
		}
	}
	r.EndedBy, r.EndCause, r.EndReason, r.Missing = is.cfg.ID.String(), EndUnissuable, "not issued: "+why, nil
	details := map[string]string{"cause": EndUnissuable, "error": cause.Error()}
	if end := r.grantEnd(); !is.now().Before(end) {
		r.State = StateExpired
		details["not_after"] = end.Format(time.RFC3339)
		return record(is.cfg.ID, audit.ActionGrantExpired, details)
	}
	r.State = StateRevoked
	details["reason"] = r.EndReason
	return record(is.cfg.ID, audit.ActionGrantRevoked, details)
}

// mint signs the grant SVID of r for pub (nil: a new key pair), valid from
// now until r.NotAfter exactly (or the CA's end, if that comes first).
func (is *Issuer) mint(r *Request, pub crypto.PublicKey) (*x509svid.SVID, error) {
	id, err := spiffeid.FromString(r.Requester)
	if err != nil {
		return nil, fmt.Errorf("issuer: request %s: requester: %w", r.ID, err)
	}
	g := &grant.Grant{ID: r.ID, Scopes: r.Scopes, UseLimit: r.UseLimit}
	// A break-glass grant has no approvers: its reviews come after the fact
	// and a certificate minted after one (Workload API) must not claim it.
	for _, rv := range r.Reviews {
		if r.BreakGlass {
			break
		}
		if rv.Approve && len(g.Approvers) < grant.MaxApprovers {
			if a, err := spiffeid.FromString(rv.Approver); err == nil {
				g.Approvers = append(g.Approvers, a)
			}
		}
	}
	if !is.now().Before(r.NotAfter) {
		return nil, fmt.Errorf("%w: request %s: the grant has expired", ErrState, r.ID)
	}
	start := time.Now()
	svid, err := is.cfg.CA.Mint(ca.Request{ID: id, PublicKey: pub, NotAfter: r.NotAfter, Grant: g})
	is.metrics.mintSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("issuer: request %s: %w", r.ID, err)
	}
	return svid, nil
}

func chainDER(svid *x509svid.SVID) [][]byte {
	out := make([][]byte, 0, len(svid.Certificates))
	for _, c := range svid.Certificates {
		out = append(out, c.Raw)
	}
	return out
}

// Fetched is what Fetch returns: the grant's certificate chain (DER, leaf
// first) and, for a request made without a CSR, the private key the issuer
// made for it (PKCS#8 DER), which is never stored.
type Fetched struct {
	Request   *Request
	CertChain [][]byte
	Key       crypto.Signer
}

// Fetch returns the certificate of caller's issued grant. For a CSR-based
// request it is the certificate minted at issuance, and only without
// withKey (FetchGrant: the requester holds the key). For one made without a
// CSR, and only when withKey is set (the Workload API, which delivers the
// key over its socket), a new key pair and certificate are made for this
// fetch, valid until the grant's end.
//
// An issued grant is read from the in-memory index of issued grants, which
// every committed change updates before the call that made it returns; only
// the cases that end in an error (another requester's grant, one not
// issued, an unknown ID) read the store, so that the error says why.
func (is *Issuer) Fetch(ctx context.Context, caller spiffeid.ID, id string, withKey bool) (*Fetched, error) {
	r := is.issued.get(caller.String(), id)
	if r == nil {
		var err error
		if r, err = is.cfg.Store.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	if r.Requester != caller.String() {
		return nil, fmt.Errorf("%w: only the requester may fetch grant %s", ErrPermission, id)
	}
	if r.PublicKey == nil && !withKey {
		return nil, fmt.Errorf("%w: request %s was made without a CSR: its grant is delivered by the SPIFFE Workload API, not FetchGrant", ErrState, id)
	}
	if r.PublicKey != nil && withKey {
		return nil, fmt.Errorf("%w: request %s was made with a CSR: its key stays with the requester, which fetches its certificate with FetchGrant; the Workload API does not serve it", ErrState, id)
	}
	if r.State != StateIssued {
		return nil, fmt.Errorf("%w: request %s is %s, not ISSUED", ErrState, id, r.State)
	}
	if !is.now().Before(r.NotAfter) {
		return nil, fmt.Errorf("%w: grant %s has expired", ErrState, id)
	}
	out := &Fetched{Request: r, CertChain: r.CertChain}
	details := map[string]string{"serial": r.Serial}
	if r.PublicKey == nil {
		svid, err := is.mint(r, nil)
		if err != nil {
			return nil, err
		}
		out.CertChain, out.Key = chainDER(svid), svid.PrivateKey
		details["serial"] = fmt.Sprintf("%x", svid.Certificates[0].SerialNumber)
	}
	rec := record(caller, audit.ActionGrantFetched, details)
	rec.Subject = id
	if err := is.cfg.Store.Audit(ctx, rec); err != nil {
		return nil, err
	}
	return out, nil
}
