package revoketest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

const policyYAML = `version: 1
max_ttl: 1h
groups:
  ops: {members: ["spiffe://example.org/person/alice"]}
permissions:
  revoke_any: [ops]
  watch_revocations: ["spiffe://example.org/service/*"]
rules:
  - name: ledger
    requesters: ["spiffe://example.org/person/*"]
    scopes:
      - method: /bank.v1.Ledger/*
    max_ttl: 30m
    approvals:
      - {count: 1, from: [ops]}
    auto_approve: 'true'
`

var td = spiffeid.RequireTrustDomainFromString("example.org")

// env is a jitd, the identities of a requester (dev), an operator (alice)
// and the ledger service, and a fake clock that verifiers and feeds share.
type env struct {
	t     *testing.T
	dir   jitd.DataDir
	ids   string
	clock *fakeclock.Clock
	srv   *jitd.Server
	addr  string
	ca    *ca.CA
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{t: t, dir: jitd.DataDir(filepath.Join(base, "data")), ids: base, clock: fakeclock.New(time.Now())}
	if err := jitd.Init(jitd.InitConfig{Dir: e.dir, TrustDomain: td.Name()}); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(e.dir.Policy(), policyYAML); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"person/dev", "person/alice", "service/ledger"} {
		_, err := jitd.Enroll(context.Background(), jitd.EnrollConfig{Dir: e.dir, ID: "spiffe://example.org/" + who, TTL: time.Hour, Out: e.idDir(who)})
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := ca.LoadFiles(ca.Config{TrustDomain: td, Clock: e.clock.Now}, e.dir.CACert(), filepath.Join(string(e.dir), "ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.ca = c
	e.start("127.0.0.1:0")
	return e
}

func (e *env) idDir(who string) string { return filepath.Join(e.ids, filepath.Base(who)) }

// start runs jitd on addr (its previous address after a stop).
func (e *env) start(addr string) {
	e.t.Helper()
	srv, err := jitd.Start(context.Background(), jitd.ServeConfig{Dir: e.dir, Listen: addr, Logger: quiet()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv, e.addr = srv, srv.Addr()
	e.t.Cleanup(func() { srv.Stop() })
}

// dialIssuer connects to jitd as who.
func (e *env) dialIssuer(who string) pb.IssuerClient {
	e.t.Helper()
	dir := e.idDir(who)
	svid, err := x509svid.Load(filepath.Join(dir, jitd.EnrollCert), filepath.Join(dir, jitd.EnrollKey))
	if err != nil {
		e.t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, jitd.EnrollBundle))
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(jitd.ServerID(td)))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return pb.NewIssuerClient(cc)
}

// replica is one instance of the protected ledger with its own feed.
type replica struct {
	addr string
	feed *verifier.Feed
}

func (e *env) startReplica(mode verifier.StaleMode) *replica {
	e.t.Helper()
	feed, err := verifier.NewFeed(verifier.FeedConfig{
		Client: e.dialIssuer("service/ledger"), StaleAfter: time.Minute, Mode: mode,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Clock: e.clock.Now, Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { feed.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
	svid, err := e.ca.Mint(ca.Request{ID: spiffeid.RequireFromPath(td, "/service/ledger"), TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{
		SVIDSource: svid, BundleSource: e.ca.Bundle(), ResourceFields: testledger.ResourceFields(),
		Revocations: feed, Clock: e.clock.Now, Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := grpc.NewServer(v.ServerOptions()...)
	srv.RegisterService(testledger.ServiceDesc(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go srv.Serve(lis)
	e.t.Cleanup(srv.Stop)
	r := &replica{addr: lis.Addr().String(), feed: feed}
	e.eventually("the feed connects", func() bool { return !feed.LastContact().IsZero() })
	return r
}

// grant asks for an auto-approved grant as dev and returns its ID and a
// connection-ready certificate.
func (e *env) grant(useLimit uint32) (string, tls.Certificate) {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://example.org/person/dev")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		e.t.Fatal(err)
	}
	api := e.dialIssuer("person/dev")
	ctx := context.Background()
	res, err := api.CreateRequest(ctx, &pb.CreateRequestRequest{
		Scopes: []*pb.Scope{{Method: "/bank.v1.Ledger/*"}}, Ttl: durationpb.New(10 * time.Minute), Csr: csr, UseLimit: useLimit,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	id := res.GetRequest().GetId()
	f, err := api.FetchGrant(ctx, &pb.FetchGrantRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return id, tls.Certificate{Certificate: f.GetCertChain(), PrivateKey: key}
}

// dial connects to a replica presenting cert.
func (e *env) dial(r *replica, cert tls.Certificate) *grpc.ClientConn {
	e.t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		e.t.Fatal(err)
	}
	svid := &x509svid.SVID{ID: spiffeid.RequireFromString(leaf.URIs[0].String()), Certificates: []*x509.Certificate{leaf}, PrivateKey: cert.PrivateKey.(*ecdsa.PrivateKey)}
	cc, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(
		verifier.ClientCredentials(svid, e.ca.Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/service/ledger")))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// eventually waits, polling, until cond holds; it fails the test after a
// generous deadline. It bounds waits on other goroutines; it asserts no
// timing.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// mintNow mints, straight from the CA at the fake clock's time, a grant
// certificate for dev: one the issuer could have issued just now.
func (e *env) mintNow() tls.Certificate {
	e.t.Helper()
	g := &grant.Grant{ID: "r-minted-now", Scopes: []grant.Scope{{Method: "/bank.v1.Ledger/*"}}}
	svid, err := e.ca.Mint(ca.Request{ID: spiffeid.RequireFromPath(td, "/person/dev"), TTL: 10 * time.Minute, Grant: g})
	if err != nil {
		e.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey}
}
