package e2e

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/jitgrant/jitgrant/internal/testledger"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
)

// The protected test service is internal/testledger's bank.v1.Ledger.

// ledgerID is the protected service's SPIFFE ID.
const ledgerID = "spiffe://example.org/service/ledger"

// startLedger starts the protected service, trusting the data directory's
// CA, with its own SVID minted by that CA, on the env's fake clock.
func (e *env) startLedger() string {
	e.t.Helper()
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	c, err := ca.LoadFiles(ca.Config{TrustDomain: td, Clock: e.clock.Now}, e.dir.CACert(), filepath.Join(string(e.dir), "ca.key"), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.startLedgerWith(c)
}

// startLedgerWith is startLedger with the CA given.
func (e *env) startLedgerWith(c *ca.CA) string {
	e.t.Helper()
	svid, err := c.Mint(ca.Request{ID: spiffeid.RequireFromString(ledgerID), TTL: 24 * time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{
		SVIDSource: svid, BundleSource: c.Bundle(),
		ResourceFields: testledger.ResourceFields(),
		Clock:          e.clock.Now,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
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
	return lis.Addr().String()
}

// dialLedger connects to the ledger with the grant jitctl wrote to dir
// (grant.pem, grant.key, bundle.pem).
func (e *env) dialLedger(addr, dir string) *grpc.ClientConn {
	e.t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, "grant.pem"), filepath.Join(dir, "grant.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(trustDomain), filepath.Join(dir, "bundle.pem"))
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ledgerID)))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// callLedger calls method with resource and returns the grant ID the
// handler saw.
func callLedger(cc *grpc.ClientConn, method, resource string) (string, error) {
	return testledger.Call(cc, method, resource)
}
