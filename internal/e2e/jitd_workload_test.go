package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

const workloadPolicy = `version: 1
max_ttl: 1h
groups:
  ops: {members: ["spiffe://example.org/person/alice"]}
rules:
  - name: balance
    requesters: ["spiffe://example.org/workload/test"]
    scopes:
      - method: /bank.v1.Ledger/GetBalance
    max_ttl: 10m
    approvals:
      - {count: 1, from: [ops]}
    auto_approve: 'true'
`

// hintsWatcher records the hints of every X.509 context a stream delivers.
type hintsWatcher struct{ updates chan []string }

func (w hintsWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	var hints []string
	for _, s := range c.SVIDs {
		hints = append(hints, s.ID.String()+"#"+s.Hint)
	}
	w.updates <- hints
}

func (hintsWatcher) OnX509ContextWatchError(error) {}

// TestJitdWorkloadAPI runs jitd with its Workload API socket: the test
// process, attested by its uid, gets its identity, asks for a grant with
// it, sees the grant SVID arrive on its open stream and leave it when the
// grant is revoked.
func TestJitdWorkloadAPI(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(workloadPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *jitd.ServeConfig) {
		c.PolicyPath, c.WorkloadSocket, c.MetricsListen = policyPath, sock, "127.0.0.1:0"
		c.Entries = []attest.EntryConfig{{ID: "spiffe://example.org/workload/test", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}
		c.Clock = time.Now // the Workload API's certificates meet go-spiffe's real-time checks
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := hintsWatcher{updates: make(chan []string, 16)}
	go client.WatchX509Context(ctx, w)
	next := func(what string, ok func([]string) bool) []string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case h := <-w.updates:
				if ok(h) {
					return h
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	const self = "spiffe://example.org/workload/test"
	next("the identity", func(h []string) bool { return len(h) == 1 && h[0] == self+"#" })

	// The identity SVID is what the workload calls jitd with.
	x509ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(verifier.ClientCredentials(
		x509ctx.DefaultSVID(), x509ctx.Bundles, tlsconfig.AuthorizeID(jitd.ServerID(x509ctx.DefaultSVID().ID.TrustDomain())))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := pb.NewIssuerClient(cc)
	res, err := api.CreateRequest(ctx, &pb.CreateRequestRequest{
		Scopes: []*pb.Scope{{Method: "/bank.v1.Ledger/GetBalance"}}, Ttl: durationpb.New(5 * time.Minute),
	})
	if err != nil || res.GetRequest().GetState() != pb.State_STATE_ISSUED {
		t.Fatalf("CreateRequest: %v %v", res.GetRequest().GetState(), err)
	}
	id := res.GetRequest().GetId()
	next("the grant SVID", func(h []string) bool { return slices.Equal(h, []string{self + "#", self + "#" + id}) })
	got, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g, err := grant.FromCertificate(got.SVIDs[1].Certificates[0])
	if err != nil || g.ID != id {
		t.Fatalf("grant SVID carries %v (%v), want grant %s", g, err, id)
	}

	// The workload calls a protected service with the grant, through the
	// Workload API, as a workload would.
	ledger := e.startLedger()
	if got, err := callWithWorkloadGrant(t, ctx, "unix://"+sock, ledger, id); err != nil || got != id {
		t.Fatalf("ledger call with the grant from the Workload API: %q, %v", got, err)
	}

	// The metrics show the flow so far: one active grant, an open stream.
	body := scrape(t, "http://"+e.srv.MetricsAddr()+"/metrics")
	for _, m := range []struct {
		name, labels string
		atLeast      float64
	}{
		{"jitgrant_issuer_active_grants", "", 1},
		{"jitgrant_workload_api_streams", `method="/SpiffeWorkloadAPI/FetchX509SVID"`, 1},
		{"jitgrant_issuer_request_changes_total", `action="grant.issued"`, 1},
		{"jitgrant_issuer_events_total", `event="issued"`, 1},
		{"jitgrant_issuer_mint_seconds_count", "", 0},
		{"jitgrant_issuer_request_decision_seconds_count", "", 1},
		{"jitgrant_issuer_watchers", `stream="revocations"`, 0},
		{"jitgrant_audit_append_latency_seconds_count", "", 3},
		{"jitgrant_audit_checkpoint_age_seconds", "", 0},
		{"jitgrant_policy_loads_total", `result="ok"`, 0},
		{"jitgrant_verifier_decisions_total", `reason="public_method"`, 1},
	} {
		v, ok := metric(body, m.name, m.labels)
		if !ok || v < m.atLeast {
			t.Errorf("metric %s{%s} = %v (found %v), want at least %v", m.name, m.labels, v, ok, m.atLeast)
		}
	}
	if resp, err := http.Get("http://" + e.srv.MetricsAddr() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz: %v %v", resp, err)
	}

	// The holder revokes it: it leaves the open stream.
	if _, err := api.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: id, AckTimeout: durationpb.New(0)}); err != nil {
		t.Fatal(err)
	}
	next("the grant SVID to go", func(h []string) bool { return slices.Equal(h, []string{self + "#"}) })

	found := false
	log := e.srv.AuditLog()
	for seq := range log.Size() {
		en, err := log.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		found = found || en.Action == audit.ActionEntriesLoaded
	}
	if !found {
		t.Error("the registration entries were not audited")
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// metric returns the value of the first sample of name whose labels contain
// labels, from a Prometheus text exposition.
func metric(body, name, labels string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if labels != "" && !strings.Contains(line, labels) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		return v, err == nil
	}
	return 0, false
}
