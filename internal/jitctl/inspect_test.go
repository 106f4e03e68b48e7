package jitctl

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// writeSVID writes an SVID's chain (and, with key, its key) as PEM.
func writeSVID(t *testing.T, svid *x509svid.SVID, withKey bool) string {
	t.Helper()
	certs, key, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data := certs
	if withKey {
		data = append(key, certs...) // a key block first: inspect skips it
	}
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspect(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	c, err := ca.Generate(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	dev := spiffeid.RequireFromPath(td, "/person/dev")
	g := &grant.Grant{
		ID: "r0abc",
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*", "accounts/7"}},
			{Method: "/bank.v1.Ledger/GetBalance"},
		},
		Approvers: []spiffeid.ID{spiffeid.RequireFromPath(td, "/person/alice"), spiffeid.RequireFromPath(td, "/person/bob")},
		UseLimit:  3,
	}
	grantSVID, err := c.Mint(ca.Request{ID: dev, TTL: 10 * time.Minute, Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	identSVID, err := c.Mint(ca.Request{ID: dev, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	grantPath := writeSVID(t, grantSVID, true)
	identPath := writeSVID(t, identSVID, false)

	t.Run("grant table", func(t *testing.T) {
		stdout, stderr, code := run(t, "inspect", grantPath)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{
			"spiffe id:   spiffe://example.org/person/dev\n",
			"grant:       r0abc\n",
			"scope:       /bank.v1.Ledger/Refund @ accounts/*, accounts/7\n",
			"scope:       /bank.v1.Ledger/GetBalance (any resource)\n",
			"approvers:   spiffe://example.org/person/alice, spiffe://example.org/person/bob\n",
			"use limit:   3\n",
			"(valid for ",
			"serial:      " + grantSVID.Certificates[0].SerialNumber.Text(16) + "\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("inspect output lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("grant json", func(t *testing.T) {
		stdout, stderr, code := run(t, "-o", "json", "inspect", grantPath)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got inspectJSON
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		leaf := grantSVID.Certificates[0]
		if got.SpiffeID != dev.String() || !got.NotAfter.Equal(leaf.NotAfter) || !got.Valid || got.Grant == nil {
			t.Fatalf("inspect -o json = %+v", got)
		}
		if got.Grant.ID != "r0abc" || got.Grant.UseLimit != 3 || len(got.Grant.Scopes) != 2 || len(got.Grant.Approvers) != 2 ||
			strings.Join(got.Grant.Scopes[0].Resources, ",") != "accounts/*,accounts/7" {
			t.Errorf("grant = %+v", got.Grant)
		}
		for _, k := range []string{`"spiffe_id"`, `"not_before"`, `"not_after"`, `"use_limit"`, `"chain_length"`} {
			if !strings.Contains(stdout, k) {
				t.Errorf("JSON lacks %s", k)
			}
		}
	})

	t.Run("identity SVID", func(t *testing.T) {
		stdout, _, code := run(t, "inspect", identPath)
		if code != 0 || !strings.Contains(stdout, "grant:       no grant (identity SVID)") {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
		stdout, _, code = run(t, "-o", "json", "inspect", identPath)
		if code != 0 || !strings.Contains(stdout, `"grant": null`) {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
	})

	t.Run("expired, offline clock", func(t *testing.T) {
		out, err := describeCert(grantPath, grantSVID.Certificates, time.Now().Add(time.Hour))
		if err != nil || out.Valid {
			t.Fatalf("describeCert an hour later: valid=%v, %v", out.Valid, err)
		}
		var b strings.Builder
		if err := printInspect(&b, out, time.Now().Add(time.Hour)); err != nil || !strings.Contains(b.String(), "(expired)") {
			t.Errorf("printInspect an hour later:\n%s", b.String())
		}
	})

	t.Run("DER", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cert.der")
		if err := os.WriteFile(path, grantSVID.Certificates[0].Raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if stdout, _, code := run(t, "inspect", path); code != 0 || !strings.Contains(stdout, "r0abc") {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
	})

	t.Run("not a certificate", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "junk.pem")
		os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o600)
		if _, stderr, code := run(t, "inspect", path); code != 1 || !strings.HasPrefix(stderr, "jitctl: ") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if _, stderr, code := run(t, "inspect", filepath.Join(t.TempDir(), "missing.pem")); code != 1 || !strings.Contains(stderr, "no such file") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}
