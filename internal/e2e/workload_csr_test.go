package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestJitdWorkloadAPIWithCSRGrant: a workload that asks for a grant with a
// CSR (as jitctl request does), with the identity SVID it got from jitd's
// Workload API, keeps its Workload API: open streams stay open and carry
// later grants, fetches succeed, and the CSR grant, whose key stays with
// the workload, is not served there but fetched and revoked through the
// issuer API.
func TestJitdWorkloadAPIWithCSRGrant(t *testing.T) {
	const self = "spiffe://example.org/workload/test"
	e, addr := workloadEnv(t, fmt.Sprintf("unix:uid:%d", os.Getuid()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := hintsWatcher{updates: make(chan []string, 16)}
	streamDone := make(chan error, 1)
	go func() { streamDone <- client.WatchX509Context(ctx, w) }()
	next := func(what string, ok func([]string) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case h := <-w.updates:
				if ok(h) {
					return
				}
			case err := <-streamDone:
				t.Fatalf("the stream ended waiting for %s: %v", what, err)
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	next("the identity", func(h []string) bool { return slices.Equal(h, []string{self + "#"}) })

	api := issuerClient(t, ctx, client, e)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{spiffeid.RequireFromString(self).URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	scopes := []*pb.Scope{{Method: mBalance}}
	res, err := api.CreateRequest(ctx, &pb.CreateRequestRequest{Scopes: scopes, Ttl: durationpb.New(5 * time.Minute), Csr: csr})
	if err != nil || res.GetRequest().GetState() != pb.State_STATE_ISSUED {
		t.Fatalf("CreateRequest with a CSR: %v %v", res.GetRequest().GetState(), err)
	}
	withCSR := res.GetRequest().GetId()

	// Fetches succeed, with the identity only.
	got, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatalf("FetchX509Context with a CSR grant: %v", err)
	}
	if len(got.SVIDs) != 1 || got.SVIDs[0].ID.String() != self || got.SVIDs[0].Hint != "" {
		t.Errorf("SVIDs %v, want the identity only", got.SVIDs)
	}
	// The open stream carries a grant made without a CSR.
	res, err = api.CreateRequest(ctx, &pb.CreateRequestRequest{Scopes: scopes, Ttl: durationpb.New(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	plain := res.GetRequest().GetId()
	next("the grant made without a CSR", func(h []string) bool { return slices.Equal(h, []string{self + "#", self + "#" + plain}) })

	// The CSR grant is the workload's through the issuer API.
	f, err := api.FetchGrant(ctx, &pb.FetchGrantRequest{Id: withCSR})
	if err != nil {
		t.Fatalf("FetchGrant: %v", err)
	}
	leaf, err := x509.ParseCertificate(f.GetCertChain()[0])
	if err != nil || !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Errorf("FetchGrant: certificate for another key (%v)", err)
	}
	if _, err := api.RevokeGrant(ctx, &pb.RevokeGrantRequest{Id: withCSR, AckTimeout: durationpb.New(0)}); err != nil {
		t.Fatalf("RevokeGrant of the CSR grant: %v", err)
	}
	if _, err := client.FetchX509Context(ctx); err != nil {
		t.Errorf("FetchX509Context after the revocation: %v", err)
	}
}
