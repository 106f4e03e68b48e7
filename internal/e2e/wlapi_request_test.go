package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// workloadEnv is a jitd under workloadPolicy serving its Workload API on a
// socket, with one entry, spiffe://example.org/workload/test, for
// selectors. It returns the socket's address (unix://...).
func workloadEnv(t *testing.T, selectors ...string) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(workloadPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *jitd.ServeConfig) {
		c.PolicyPath, c.WorkloadSocket = policyPath, sock
		c.Entries = []attest.EntryConfig{{ID: "spiffe://example.org/workload/test", Selectors: selectors, TTL: "1h"}}
		c.Clock = time.Now // the Workload API's certificates meet go-spiffe's real-time checks
	})
	return e, "unix://" + sock
}

// issuerClient connects to e's issuer API with the identity SVID that the
// Workload API at addr serves the test process.
func issuerClient(t *testing.T, ctx context.Context, client *workloadapi.Client, e *env) pb.IssuerClient {
	t.Helper()
	x509ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(verifier.ClientCredentials(
		x509ctx.DefaultSVID(), x509ctx.Bundles, tlsconfig.AuthorizeID(jitd.ServerID(x509ctx.DefaultSVID().ID.TrustDomain())))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewIssuerClient(cc)
}

// workloadJitctl runs jitctl with its identity from the Workload API.
func workloadJitctl(e *env, args ...string) result {
	var out, errOut bytes.Buffer
	code := jitctl.Main(context.Background(), append([]string{"--server", e.srv.Addr(), "--timeout", "20s"}, args...), &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// TestWorkloadAPIRequest runs the README's workload flow: jitctl, with its
// identity from jitd's Workload API, asks for a grant without a CSR; the
// grant appears on the Workload API with the request ID as its hint;
// verifier.WorkloadDialOptions finds it there and calls the protected
// service with it.
func TestWorkloadAPIRequest(t *testing.T) {
	e, addr := workloadEnv(t, fmt.Sprintf("unix:uid:%d", os.Getuid()))
	t.Setenv(jitctl.EnvWorkloadAPI, addr)
	ledger := e.startLedger()

	r := workloadJitctl(e, "request", "--scope", mBalance, "--ttl", "5m", "--wait")
	if r.code != 0 {
		t.Fatalf("jitctl request on the Workload API: %s", r)
	}
	id := strings.SplitN(r.stdout, "\n", 2)[0]
	for _, want := range []string{"delivery: the Workload API at " + addr + ", hint " + id, "issued: the Workload API serves grant " + id} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("jitctl request output lacks %q:\n%s", want, r)
		}
	}
	if _, err := os.Stat("grant-" + id); err == nil {
		t.Errorf("a Workload API grant left a key directory grant-%s behind", id)
	}
	if s := workloadJitctl(e, "-o", "json", "show", id); s.code != 0 || !strings.Contains(s.stdout, `"has_csr": false`) {
		t.Errorf("the request was sent with a CSR, so it would never be served on the Workload API: %s", s)
	}

	// The README's Go lines, as a workload runs them.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := callWithWorkloadGrant(t, ctx, addr, ledger, id); err != nil || got != id {
		t.Fatalf("GetBalance with the Workload API grant: grant %q, %v; want grant %s", got, err, id)
	}

	// --delivery files still makes the key here, even with the socket set.
	out := filepath.Join(t.TempDir(), "g")
	r = workloadJitctl(e, "request", "--scope", mBalance, "--ttl", "5m", "--delivery", "files", "--out", out, "--wait")
	if r.code != 0 {
		t.Fatalf("jitctl request --delivery files: %s", r)
	}
	for _, f := range []string{"grant.key", "grant.pem"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("--delivery files: %v", err)
		}
	}
}

// callWithWorkloadGrant calls GetBalance on the ledger at ledger with grant
// id, which the Workload API at addr serves, as the README's Go lines do,
// and returns the grant ID the ledger saw.
func callWithWorkloadGrant(t *testing.T, ctx context.Context, addr, ledger, id string) (string, error) {
	t.Helper()
	opts, source, err := verifier.WorkloadDialOptions(ctx, id, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ledgerID)),
		workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	cc, err := grpc.NewClient(ledger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	return callLedger(cc, mBalance, "accounts/42")
}

// TestWorkloadAPIRefusesCaller: a socket that has no entry for the caller
// is reported as such, with the refused exit status, not as a deadline.
func TestWorkloadAPIRefusesCaller(t *testing.T) {
	e, addr := workloadEnv(t, "unix:uid:4294967294")
	t.Setenv(jitctl.EnvWorkloadAPI, addr)
	r := workloadJitctl(e, "request", "--scope", mBalance, "--ttl", "5m")
	if r.code != jitctl.ExitDenied {
		t.Errorf("exit %d, want %d (refused):\n%s", r.code, jitctl.ExitDenied, r)
	}
	want := "the Workload API at " + addr + " refused this process: no registration entry matches it"
	if !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "deadline") {
		t.Errorf("stderr %q, want it to say %q and no deadline", r.stderr, want)
	}
}

// TestRequestDeliveryFlags: the flag combinations jitctl refuses before
// calling anyone.
func TestRequestDeliveryFlags(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown delivery", []string{"--delivery", "email"}, `--delivery "email": want auto, files or workload-api`},
		{"out without files", []string{"--delivery", "workload-api", "--out", "x"}, "--out and --delivery workload-api exclude each other"},
		{"workload-api with an identity directory", []string{"--delivery", "workload-api"}, "needs the identity from the Workload API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.jitctl(dev, append([]string{"request", "--scope", mBalance, "--ttl", "5m"}, tt.args...)...)
			if r.code != jitctl.ExitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, jitctl.ExitUsage, tt.want)
			}
		})
	}
}
