package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/examples/workload/access"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// step is one narrated expectation: run fails when the system does not
// behave as its title says.
type step struct {
	title string
	run   func(*demo, context.Context) error
}

// The account the refund story is about.
const account = "accounts/42"

func steps() []step {
	return []step{
		{"A short read-only balance check is approved automatically and used", (*demo).balanceCheck},
		{"A refund request waits for two approvals", (*demo).refundPending},
		{"alice (SRE) approves: one of two factors, still pending", (*demo).firstApproval},
		{"bob (security) approves: the grant is issued", (*demo).secondApproval},
		{"The refund succeeds with the grant", (*demo).refundSucceeds},
		{"A transfer with the same grant is refused", (*demo).transferRefused},
		{"alice revokes the grant; the next call on the same connection is refused", (*demo).revoked},
		{"A one-shot grant works exactly once", (*demo).oneShot},
		{"An expired grant is refused on a connection that is still open", (*demo).expired},
		{"bob exports the audit log and verifies it offline", (*demo).auditVerified},
		{"A tampered copy of the audit log is caught", (*demo).auditTampered},
	}
}

var ledgerSPIFFEID = spiffeid.RequireFromString(ledgerID)

// request asks for access as the payments workload and narrates it.
func (d *demo) request(ctx context.Context, r access.Request) (*pb.AccessRequest, error) {
	var scopes []string
	for _, s := range r.Scopes {
		scope := s.GetMethod()
		if len(s.GetResources()) > 0 {
			scope += "@" + strings.Join(s.GetResources(), ",")
		}
		scopes = append(scopes, scope)
	}
	limit := ""
	if r.UseLimit > 0 {
		limit = fmt.Sprintf(", %d use(s)", r.UseLimit)
	}
	d.n.say("payments asks jitd for %s for %s%s, reason %q", strings.Join(scopes, " "), shortDuration(r.TTL), limit, r.Reason)
	req, err := d.client.Request(ctx, r)
	if err != nil {
		return nil, err
	}
	d.n.saw("request %s is %s (rule %s)", req.GetId(), access.StateName(req.GetState()), req.GetRule())
	return req, nil
}

// shortDuration writes 2m rather than 2m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// connect opens a connection to the ledger with the grant SVID of req.
func (d *demo) connect(ctx context.Context, req *pb.AccessRequest) (*access.GrantConn, error) {
	conn, err := d.client.Connect(ctx, req.GetId(), ledgerSPIFFEID, d.ledger.Addr(), 20*time.Second)
	if err != nil {
		return nil, err
	}
	d.n.saw("the Workload API delivered the grant SVID (hint %s) next to the identity", req.GetId())
	return conn, nil
}

// wantState fails unless req is in state want.
func wantState(req *pb.AccessRequest, want pb.State) error {
	if req.GetState() != want {
		return fmt.Errorf("%w: request %s is %s, want %s", errUnexpected, req.GetId(), access.StateName(req.GetState()), access.StateName(want))
	}
	return nil
}

// wantRefused fails unless err is the verifier's PermissionDenied with a
// message containing one of whys.
func (d *demo) wantRefused(err error, whys ...string) error {
	if err == nil {
		return fmt.Errorf("%w: the call succeeded, want it refused (%s)", errUnexpected, strings.Join(whys, " or "))
	}
	st, _ := status.FromError(err)
	if st.Code() == codes.PermissionDenied && slices.ContainsFunc(whys, func(why string) bool { return strings.Contains(st.Message(), why) }) {
		d.n.saw("refused: %s %q", st.Code(), st.Message())
		return nil
	}
	return fmt.Errorf("%w: the call failed with %v, want PermissionDenied: %s", errUnexpected, err, strings.Join(whys, " or "))
}

// autoBalance asks for an automatic balance-check grant and connects to
// the ledger with it; the caller closes the connection.
func (d *demo) autoBalance(ctx context.Context, ttl time.Duration, reason string, useLimit uint32) (*pb.AccessRequest, *access.GrantConn, error) {
	req, err := d.request(ctx, access.Request{
		Scopes: []*pb.Scope{{Method: bankv1.Ledger_GetBalance_FullMethodName}}, TTL: ttl,
		Reason: reason, UseLimit: useLimit,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := wantState(req, pb.State_STATE_ISSUED); err != nil {
		return nil, nil, err
	}
	conn, err := d.connect(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return req, conn, nil
}

func (d *demo) balanceCheck(ctx context.Context) error {
	_, conn, err := d.autoBalance(ctx, 2*time.Minute, "nightly reconciliation", 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	bal, err := bankv1.NewLedgerClient(conn).GetBalance(ctx, &bankv1.GetBalanceRequest{Account: account})
	if err != nil {
		return err
	}
	d.n.saw("GetBalance(%s) = %d cents", bal.GetAccount(), bal.GetBalanceCents())
	return nil
}

func (d *demo) refundPending(ctx context.Context) error {
	req, err := d.request(ctx, access.Request{
		Scopes: []*pb.Scope{{Method: bankv1.Ledger_Refund_FullMethodName, Resources: []string{account}}},
		TTL:    10 * time.Minute, Reason: "INC-4242: refund a double charge",
	})
	if err != nil {
		return err
	}
	if err := wantState(req, pb.State_STATE_PENDING); err != nil {
		return err
	}
	d.refundID = req.GetId()
	return nil
}

// currentRefund reads the refund request as the workload sees it.
func (d *demo) currentRefund(ctx context.Context) (*pb.AccessRequest, error) {
	return d.client.API.GetRequest(ctx, &pb.GetRequestRequest{Id: d.refundID})
}

func (d *demo) firstApproval(ctx context.Context) error {
	if _, err := d.jitctl(ctx, aliceID, false, "approve", d.refundID, "--comment", "customer ticket checked"); err != nil {
		return err
	}
	req, err := d.currentRefund(ctx)
	if err != nil {
		return err
	}
	if err := wantState(req, pb.State_STATE_PENDING); err != nil {
		return err
	}
	d.n.saw("still pending: the security factor is missing")
	return nil
}

func (d *demo) secondApproval(ctx context.Context) error {
	if _, err := d.jitctl(ctx, bobID, false, "approve", d.refundID); err != nil {
		return err
	}
	req, err := d.client.WaitIssued(ctx, &pb.AccessRequest{Id: d.refundID, Requester: paymentsID}, 20*time.Second)
	if err != nil {
		return err
	}
	var approvers []string
	for _, r := range req.GetReviews() {
		if r.GetApprove() {
			approvers = append(approvers, r.GetApprover())
		}
	}
	d.n.saw("request %s is issued, approved by %s", req.GetId(), strings.Join(approvers, " and "))
	return nil
}

func (d *demo) refundSucceeds(ctx context.Context) error {
	req, err := d.currentRefund(ctx)
	if err != nil {
		return err
	}
	if d.refund, err = d.connect(ctx, req); err != nil {
		return err
	}
	bal, err := bankv1.NewLedgerClient(d.refund).Refund(ctx, &bankv1.RefundRequest{Account: account, AmountCents: 1250})
	if err != nil {
		return err
	}
	if bal.GetBalanceCents() != 1250 {
		return fmt.Errorf("%w: balance after the refund is %d cents, want 1250", errUnexpected, bal.GetBalanceCents())
	}
	d.n.saw("Refund(%s, 1250 cents): the balance is now %d cents", account, bal.GetBalanceCents())
	return nil
}

func (d *demo) transferRefused(ctx context.Context) error {
	_, err := bankv1.NewLedgerClient(d.refund).Transfer(ctx, &bankv1.TransferRequest{Account: account, To: "accounts/7", AmountCents: 1000})
	if err := d.wantRefused(err, "no grant for /bank.v1.Ledger/Transfer"); err != nil {
		return err
	}
	if got := d.ledger.Ledger.Balance(account); got != 1250 {
		return fmt.Errorf("%w: balance of %s is %d cents after a refused transfer, want 1250", errUnexpected, account, got)
	}
	return nil
}

func (d *demo) revoked(ctx context.Context) error {
	out, err := d.jitctl(ctx, aliceID, false, "revoke", d.refundID, "--reason", "refund done")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "acknowledged by 1 of 1") {
		return fmt.Errorf("%w: jitctl revoke did not report the ledger's acknowledgement", errUnexpected)
	}
	_, err = bankv1.NewLedgerClient(d.refund).Refund(ctx, &bankv1.RefundRequest{Account: account, AmountCents: 1250})
	return d.wantRefused(err, "grant revoked")
}

func (d *demo) oneShot(ctx context.Context) error {
	_, conn, err := d.autoBalance(ctx, time.Minute, "one look at a balance", 1)
	if err != nil {
		return err
	}
	defer conn.Close()
	ledger := bankv1.NewLedgerClient(conn)
	bal, err := ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: account})
	if err != nil {
		return err
	}
	d.n.saw("first GetBalance(%s) = %d cents", bal.GetAccount(), bal.GetBalanceCents())
	// The ledger counts the use and reports it to jitd, which revokes the
	// spent grant: whichever the ledger sees first refuses the second call.
	_, err = ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: account})
	return d.wantRefused(err, "use limit reached", "grant revoked")
}

// expiredTTL is the life asked for the grant of the expired step: long
// enough that the first call is made well within it on a loaded machine (the
// certificate's NotAfter is whole seconds, so its real life is up to a
// second shorter), short enough not to make the demo wait long.
const expiredTTL = 5 * time.Second

// expiryMargin is how long after the certificate's NotAfter the step makes
// its second call.
const expiryMargin = time.Second

func (d *demo) expired(ctx context.Context) error {
	req, conn, err := d.autoBalance(ctx, expiredTTL, "a very short look", 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Wait on the certificate the connection presents, whatever TTL the
	// issuer granted, not on a fixed sleep.
	notAfter, err := d.grantNotAfter(ctx, req.GetId())
	if err != nil {
		return err
	}
	ledger := bankv1.NewLedgerClient(conn)
	if _, err := ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: account}); err != nil {
		return err
	}
	d.n.saw("GetBalance works while the grant lasts")
	d.n.say("waiting for the grant certificate to expire at %s, keeping the TLS connection open...", notAfter.Format(time.TimeOnly))
	t := time.NewTimer(time.Until(notAfter) + expiryMargin)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	_, err = ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: account})
	return d.wantRefused(err, "grant expired")
}

// grantNotAfter returns the NotAfter of the grant SVID of grantID, as the
// Workload API delivers it.
func (d *demo) grantNotAfter(ctx context.Context, grantID string) (time.Time, error) {
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+d.sock))
	if err != nil {
		return time.Time{}, err
	}
	for _, s := range svids {
		if s.Hint == grantID {
			return s.Certificates[0].NotAfter, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: the Workload API has no SVID for grant %s", errUnexpected, grantID)
}

func (d *demo) auditVerified(ctx context.Context) error {
	d.export = filepath.Join(d.dir, "audit.jsonl")
	if _, err := d.jitctl(ctx, bobID, false, "audit", "export", "--out", d.export); err != nil {
		return err
	}
	out, err := d.jitctl(ctx, "", false, "audit", "verify", d.export, "--key", d.data.AuditPublicKey())
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "OK:") {
		return fmt.Errorf("%w: jitctl audit verify did not say OK", errUnexpected)
	}
	return nil
}

func (d *demo) auditTampered(ctx context.Context) error {
	b, err := os.ReadFile(d.export)
	if err != nil {
		return err
	}
	// Someone rewrites history: the refund's reason becomes harmless.
	tampered := strings.Replace(string(b), "INC-4242: refund a double charge", "INC-4242: routine check", 1)
	if tampered == string(b) {
		return fmt.Errorf("%w: the export does not record the refund's reason", errUnexpected)
	}
	d.n.say("someone edits the refund request's reason in a copy of the export")
	copyPath := filepath.Join(d.dir, "audit-tampered.jsonl")
	if err := os.WriteFile(copyPath, []byte(tampered), 0o600); err != nil {
		return err
	}
	out, err := d.jitctl(ctx, "", true, "audit", "verify", copyPath, "--key", d.data.AuditPublicKey())
	if err != nil {
		return err
	}
	if !strings.Contains(out, "seq ") {
		return fmt.Errorf("%w: jitctl audit verify failed without naming the entry", errUnexpected)
	}
	d.n.saw("caught: verification names the edited entry and exits 1")
	return nil
}
