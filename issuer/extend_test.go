package issuer_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// extendPolicy is testPolicy with an extend: block on the refund rule
// (the read rule keeps none).
var extendPolicy = strings.Replace(testPolicy, "    pending_timeout: 30m\n",
	"    pending_timeout: 30m\n    extend:\n      max_total: 15m\n      max_count: 2\n      auto_approve: 'extension.ttl <= duration(\"2m\") && grant.id != \"\"'\n", 1)

// newExtendEnv is newEnv under extendPolicy.
func newExtendEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	p, err := policy.Parse([]byte(extendPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies.Swap(p)
	return e
}

// leafOf parses the leaf of r's certificate chain.
func leafOf(t *testing.T, r *issuer.Request) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(r.CertChain[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestExtend: an issued grant's end moves later when policy approves the
// extension (auto_approve, or the rule's approvals from others than the
// holder); it stays when policy refuses it (no extend: block, past
// max_total or max_count, not the holder) or an approver denies it, and the
// grant then ends as before. An approved extension keeps the grant's ID,
// mints a new certificate for the stored CSR key and is audited.
func TestExtend(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// run extends the 5-minute grant r; it returns the error of the
		// step expected to fail (nil if none) and how much later the grant
		// must end.
		run       func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration)
		wantErr   error
		wantAudit []audit.Action // the entries after grant.issued
	}{
		{
			name: "auto-approved",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				_, err := e.is.Extend(ctx, dev, r.ID, 2*time.Minute, "INC-42: still refunding")
				return err, 2 * time.Minute
			},
			wantAudit: []audit.Action{audit.ActionGrantExtensionRequested, audit.ActionGrantExtended},
		},
		{
			name: "approved by the rule's approvers, not the holder",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				x, err := e.is.Extend(ctx, dev, r.ID, 5*time.Minute, "INC-42: more")
				if err != nil {
					return err, 0
				}
				if x.NotAfter != r.NotAfter || len(x.Extensions) != 1 || x.Extensions[0].State != issuer.ExtensionPending {
					t.Fatalf("after Extend: end %s, extensions %+v; want the end unchanged and one pending", x.NotAfter, x.Extensions)
				}
				if _, err := e.review(dev, r.ID, true); !isErr(err, issuer.ErrPermission) {
					t.Fatalf("holder approving own extension: %v, want ErrPermission", err)
				}
				for _, who := range []string{"alice", "alice", "bob"} {
					id := alice
					if who == "bob" {
						id = bob
					}
					if _, err := e.review(id, r.ID, true); err != nil {
						t.Fatal(err)
					}
				}
				return nil, 5 * time.Minute
			},
			wantAudit: []audit.Action{audit.ActionGrantExtensionRequested, audit.ActionGrantExtensionReviewed, audit.ActionGrantExtended},
		},
		{
			name: "denied: the grant ends as before",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				if _, err := e.is.Extend(ctx, dev, r.ID, 5*time.Minute, "INC-42: more"); err != nil {
					return err, 0
				}
				if _, err := e.review(alice, r.ID, false); err != nil {
					t.Fatal(err)
				}
				if x := e.get(r.ID); x.Extensions[0].State != issuer.ExtensionDenied {
					t.Fatalf("extension %s, want DENIED", x.Extensions[0].State)
				}
				if _, err := e.is.Extend(ctx, dev, r.ID, time.Minute, "again"); err != nil {
					t.Fatalf("a new extension after a denied one: %v", err)
				}
				e.clock.Set(r.NotAfter.Add(2 * time.Minute))
				e.sweep(t)
				if x := e.get(r.ID); x.State != issuer.StateExpired || x.NotAfter != r.NotAfter.Add(time.Minute) {
					t.Fatalf("after the end: %s at %s", x.State, x.NotAfter)
				}
				return nil, time.Minute
			},
			wantAudit: []audit.Action{audit.ActionGrantExtensionRequested, audit.ActionGrantExtensionDenied,
				audit.ActionGrantExtensionRequested, audit.ActionGrantExtended, audit.ActionGrantExpired},
		},
		{
			name: "over max_total",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				_, err := e.is.Extend(ctx, dev, r.ID, 11*time.Minute, "INC-42")
				return err, 0
			},
			wantErr: issuer.ErrPermission,
		},
		{
			name: "over max_count",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				for range 2 {
					if _, err := e.is.Extend(ctx, dev, r.ID, time.Minute, "INC-42"); err != nil {
						t.Fatal(err)
					}
				}
				_, err := e.is.Extend(ctx, dev, r.ID, time.Minute, "INC-42")
				return err, 2 * time.Minute
			},
			wantErr: issuer.ErrPermission,
			wantAudit: []audit.Action{audit.ActionGrantExtensionRequested, audit.ActionGrantExtended,
				audit.ActionGrantExtensionRequested, audit.ActionGrantExtended},
		},
		{
			name: "not the holder",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				_, err := e.is.Extend(ctx, alice, r.ID, time.Minute, "INC-42")
				return err, 0
			},
			wantErr: issuer.ErrPermission,
		},
		{
			name: "a second while one is pending",
			run: func(t *testing.T, e *env, r *issuer.Request) (error, time.Duration) {
				if _, err := e.is.Extend(ctx, dev, r.ID, 5*time.Minute, "INC-42"); err != nil {
					t.Fatal(err)
				}
				_, err := e.is.Extend(ctx, dev, r.ID, time.Minute, "INC-42")
				return err, 0
			},
			wantErr:   issuer.ErrState,
			wantAudit: []audit.Action{audit.ActionGrantExtensionRequested},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExtendEnv(t)
			r := e.issueRefund(t, 5*time.Minute)
			before := len(e.entriesOf(r.ID))
			err, later := tt.run(t, e, r)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !isErr(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			var got []audit.Action
			for _, en := range e.entriesOf(r.ID)[before:] {
				got = append(got, en.Action)
			}
			if !slices.Equal(got, tt.wantAudit) {
				t.Errorf("audit after issuance %v, want %v", got, tt.wantAudit)
			}
			// Each extension entry gives its webhook event.
			wantKinds := map[audit.Action]notify.Kind{audit.ActionGrantExtensionRequested: notify.KindExtensionRequested,
				audit.ActionGrantExtended: notify.KindExtended, audit.ActionGrantExtensionDenied: notify.KindExtensionDenied}
			var want, gotKinds []notify.Kind
			for _, a := range tt.wantAudit {
				if k, ok := wantKinds[a]; ok {
					want = append(want, k)
				}
			}
			for _, c := range e.changesOf(r.ID) {
				if ev, ok := notify.FromChange(c.r, c.action); ok && slices.Contains(want, ev.Kind) {
					gotKinds = append(gotKinds, ev.Kind)
				}
			}
			if !slices.Equal(gotKinds, want) {
				t.Errorf("extension events %v, want %v", gotKinds, want)
			}
			x := e.get(r.ID)
			if want := r.NotAfter.Add(later); !x.NotAfter.Equal(want) {
				t.Errorf("grant ends %s, want %s", x.NotAfter, want)
			}
			if x.ID != r.ID {
				t.Fatalf("ID changed")
			}
			if later > 0 && x.State == issuer.StateIssued {
				leaf := leafOf(t, x)
				if !leaf.NotAfter.Equal(x.NotAfter) || x.Serial == r.Serial {
					t.Errorf("certificate ends %s (serial %s, before %s), want a new one ending %s", leaf.NotAfter, x.Serial, r.Serial, x.NotAfter)
				}
				g, err := grant.FromCertificate(leaf)
				if err != nil || g.ID != r.ID {
					t.Errorf("new certificate's grant %v (%v), want ID %s", g, err, r.ID)
				}
				if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(leafOf(t, r).PublicKey) {
					t.Error("new certificate has another key than the CSR's")
				}
			}
		})
	}
}

// TestExtendNoRule: a grant whose rule has no extend: block cannot be
// extended, and the refusal says so.
func TestExtendNoRule(t *testing.T) {
	e := newExtendEnv(t)
	r := e.create(dev, issuer.CreateInput{Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, TTL: 5 * time.Minute, CSR: csrFor(t, dev)})
	if r = e.get(r.ID); r.State != issuer.StateIssued {
		t.Fatalf("read request %s, want ISSUED", r.State)
	}
	_, err := e.is.Extend(context.Background(), dev, r.ID, time.Minute, "more")
	if !isErr(err, issuer.ErrPermission) || !strings.Contains(err.Error(), "no extend: block") {
		t.Fatalf("error %v, want ErrPermission naming the missing extend: block", err)
	}
	if x := e.get(r.ID); !x.NotAfter.Equal(r.NotAfter) || len(x.Extensions) != 0 {
		t.Errorf("grant changed: ends %s, extensions %v", x.NotAfter, x.Extensions)
	}
}

// TestExtendExpiringNotice: an extended grant gets an expiring notice for
// its new end, after the one for its old end.
func TestExtendExpiringNotice(t *testing.T) {
	e := newExtendEnv(t)
	r := e.issueRefund(t, 10*time.Minute)
	e.clock.Set(r.NotAfter.Add(-issuer.DefaultExpiringLead))
	e.sweep(t)
	x, err := e.is.Extend(context.Background(), dev, r.ID, 2*time.Minute, "INC-42")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(x.NotAfter.Add(-issuer.DefaultExpiringLead))
	e.sweep(t)
	want := []string{r.NotAfter.Format(time.RFC3339), x.NotAfter.Format(time.RFC3339)}
	if got := e.expiringNotices(r.ID); !slices.Equal(got, want) {
		t.Errorf("expiring notices for %v, want %v", got, want)
	}
}

// TestExtendOwnApprovals: an extend: block's own approvals replace the
// rule's for its extensions: one security approver extends the refund
// grant, and an SRE, who may approve the request, may not review the
// extension.
func TestExtendOwnApprovals(t *testing.T) {
	e := newEnv(t)
	src := strings.Replace(testPolicy, "    pending_timeout: 30m\n",
		"    pending_timeout: 30m\n    extend: {max_total: 15m, approvals: [{count: 1, from: [security]}]}\n", 1)
	p, err := policy.Parse([]byte(src), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.policies.Swap(p)
	r := e.issueRefund(t, 5*time.Minute)
	if _, err := e.is.Extend(context.Background(), dev, r.ID, 4*time.Minute, "INC-42"); err != nil {
		t.Fatal(err)
	}
	for who, want := range map[spiffeid.ID]bool{alice: false, bob: true, dev: false} {
		page, _, err := e.is.List(context.Background(), who, issuer.ListInput{AwaitingMyReview: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.ContainsFunc(page, func(x *issuer.Request) bool { return x.ID == r.ID }); got != want {
			t.Errorf("%s's awaiting-review list holds the extended grant: %v, want %v", who, got, want)
		}
	}
	if _, err := e.review(alice, r.ID, true); !isErr(err, issuer.ErrPermission) {
		t.Fatalf("an SRE reviewing the extension: %v, want ErrPermission", err)
	}
	if _, err := e.review(bob, r.ID, true); err != nil {
		t.Fatal(err)
	}
	if x := e.get(r.ID); !x.NotAfter.Equal(r.NotAfter.Add(4*time.Minute)) || x.Extensions[0].State != issuer.ExtensionApproved {
		t.Errorf("after bob's approval: ends %s, extension %s", x.NotAfter, x.Extensions[0].State)
	}
}

// TestExtendNotPastCA: an extension never takes a grant past its CA's end:
// it is cut at that end, and one that cannot move the end is refused; for
// a grant with a CSR (whose certificate the issuer mints) and one without
// (whose SVIDs the Workload API mints until the grant's end).
func TestExtendNotPastCA(t *testing.T) {
	for _, withCSR := range []bool{true, false} {
		t.Run(fmt.Sprintf("csr=%v", withCSR), func(t *testing.T) {
			e := newExtendEnv(t)
			short, err := ca.Generate(ca.Config{TrustDomain: td, Clock: e.clock.Now, TTL: 6 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			e.close()
			e.ca = short
			e.open()
			in := refund(t, dev)
			in.TTL = 5 * time.Minute
			if !withCSR {
				in.CSR = nil
			}
			r := e.create(dev, in)
			for _, who := range []spiffeid.ID{alice, bob} {
				if _, err := e.review(who, r.ID, true); err != nil {
					t.Fatal(err)
				}
			}
			caEnd := short.Certificate().NotAfter
			x, err := e.is.Extend(context.Background(), dev, r.ID, 2*time.Minute, "INC-42")
			if err != nil {
				t.Fatal(err)
			}
			if !x.NotAfter.Equal(caEnd.Truncate(time.Second)) || withCSR && leafOf(t, x).NotAfter.After(caEnd) {
				t.Errorf("extended grant ends %s, want the CA's end %s", x.NotAfter, caEnd)
			}
			if _, err := e.is.Extend(context.Background(), dev, r.ID, time.Minute, "INC-42"); !isErr(err, issuer.ErrState) || !strings.Contains(err.Error(), "outlive") {
				t.Errorf("extending past the CA's end: %v, want ErrState", err)
			}
		})
	}
}

// TestExtensionShown: a pending extension of a grant that has ended shows
// as lapsed; any other shows its own state.
func TestExtensionShown(t *testing.T) {
	tests := []struct {
		x     string
		grant issuer.State
		want  string
	}{
		{issuer.ExtensionPending, issuer.StateIssued, issuer.ExtensionPending},
		{issuer.ExtensionPending, issuer.StateExpired, issuer.ExtensionLapsed},
		{issuer.ExtensionPending, issuer.StateRevoked, issuer.ExtensionLapsed},
		{issuer.ExtensionApproved, issuer.StateExpired, issuer.ExtensionApproved},
		{issuer.ExtensionDenied, issuer.StateIssued, issuer.ExtensionDenied},
	}
	for _, tt := range tests {
		if got := (issuer.Extension{State: tt.x}).Shown(tt.grant); got != tt.want {
			t.Errorf("%s extension of a %s grant shows %s, want %s", tt.x, tt.grant, got, tt.want)
		}
	}
}

// TestExtendArguments: bad arguments are refused with ErrInvalid naming
// them, after the holder check (a stranger learns nothing from them), and
// change nothing.
func TestExtendArguments(t *testing.T) {
	e := newExtendEnv(t)
	r := e.issueRefund(t, 5*time.Minute)
	long := strings.Repeat("x", issuer.MaxCommentLength+1)
	tests := []struct {
		name   string
		who    spiffeid.ID
		ttl    time.Duration
		reason string
		want   error
		text   string
	}{
		{"zero ttl", dev, 0, "", issuer.ErrInvalid, "ttl"},
		{"negative ttl", dev, -time.Minute, "", issuer.ErrInvalid, "ttl"},
		{"ttl over a day", dev, 25 * time.Hour, "", issuer.ErrInvalid, "ttl"},
		{"long reason", dev, time.Minute, long, issuer.ErrInvalid, "reason"},
		{"stranger with a bad ttl", mallory, 0, "", issuer.ErrPermission, "only the holder"},
		{"unknown grant", dev, time.Minute, "", issuer.ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := r.ID
			if tt.name == "unknown grant" {
				id = "r" + strings.Repeat("a", 26)
			}
			_, err := e.is.Extend(context.Background(), tt.who, id, tt.ttl, tt.reason)
			if !isErr(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %v, want %v naming %q", err, tt.want, tt.text)
			}
		})
	}
	if x := e.get(r.ID); len(x.Extensions) != 0 || !x.NotAfter.Equal(r.NotAfter) {
		t.Errorf("refused extensions changed the grant: %+v", x.Extensions)
	}
}
