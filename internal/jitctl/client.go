package jitctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
)

// The files of an --identity directory, as `jitd enroll --out` writes them.
const (
	identityCert   = "svid.pem"
	identityKey    = "svid.key"
	identityBundle = "bundle.pem"
)

// identity is the caller's SVID and the trust bundle it verifies the issuer
// with.
type identity struct {
	id      spiffeid.ID
	svid    x509svid.Source
	bundles x509bundle.Source
	close   func() error
	// fromWorkloadAPI: the identity came from $SPIFFE_ENDPOINT_SOCKET.
	fromWorkloadAPI bool
}

// loadIdentity finds the caller's identity: --identity, or --cert, --key
// and --bundle, or the Workload API at $SPIFFE_ENDPOINT_SOCKET.
func (a *app) loadIdentity(ctx context.Context) (*identity, error) {
	files := a.cert != "" || a.key != "" || a.bundle != ""
	switch {
	case a.identity != "" && files:
		return nil, cli.Usage(errors.New("--identity and --cert/--key/--bundle exclude each other"))
	case a.identity != "":
		return a.loadIdentityFiles(filepath.Join(a.identity, identityCert), filepath.Join(a.identity, identityKey),
			filepath.Join(a.identity, identityBundle), "--identity "+a.identity)
	case files:
		var missing []string
		for _, f := range []struct{ name, val string }{{"--cert", a.cert}, {"--key", a.key}, {"--bundle", a.bundle}} {
			if f.val == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return nil, cli.Usage(fmt.Errorf("--cert, --key and --bundle go together: missing %s", strings.Join(missing, ", ")))
		}
		return a.loadIdentityFiles(a.cert, a.key, a.bundle, "--cert")
	case os.Getenv(EnvWorkloadAPI) != "":
		return a.workloadIdentity(ctx)
	}
	return nil, cli.Usage(fmt.Errorf("no identity: give --identity DIR, or --cert, --key and --bundle, or set %s", EnvWorkloadAPI))
}

func (a *app) loadIdentityFiles(certPath, keyPath, bundlePath, flag string) (*identity, error) {
	svid, err := x509svid.Load(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if leaf := svid.Certificates[0]; a.now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s: the SVID in %s (%s) expired at %s: enroll again", flag, certPath, svid.ID, fmtTime(leaf.NotAfter))
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), bundlePath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return &identity{id: svid.ID, svid: svid, bundles: bundle, close: func() error { return nil }}, nil
}

// client is a connection to the issuer API as the caller.
type client struct {
	api   pb.IssuerClient
	id    spiffeid.ID // the caller's SPIFFE ID
	ident *identity
	cc    *grpc.ClientConn
}

// dial connects to --server as the caller, accepting only a server whose
// SVID is --server-id.
func (a *app) dial(ctx context.Context) (*client, error) {
	ident, err := a.loadIdentity(ctx)
	if err != nil {
		return nil, err
	}
	serverID := jitdID(ident.id.TrustDomain())
	if a.serverID != "" {
		if serverID, err = spiffeid.FromString(a.serverID); err != nil {
			ident.close()
			return nil, cli.Usage(fmt.Errorf("--server-id %q: %w", a.serverID, err))
		}
	}
	creds := verifier.ClientCredentials(ident.svid, ident.bundles, tlsconfig.AuthorizeID(serverID))
	cc, err := grpc.NewClient(a.server, grpc.WithTransportCredentials(creds))
	if err != nil {
		ident.close()
		return nil, cli.Usage(fmt.Errorf("--server %q: %w", a.server, err))
	}
	return &client{api: pb.NewIssuerClient(cc), id: ident.id, ident: ident, cc: cc}, nil
}

// jitdID is the issuer's default SPIFFE ID in td.
func jitdID(td spiffeid.TrustDomain) spiffeid.ID { return spiffeid.RequireFromPath(td, "/jitd") }

// Close closes the connection and the identity source.
func (c *client) Close() error {
	return errors.Join(c.cc.Close(), c.ident.close())
}

// call returns a context for one unary call, bounded by --timeout.
func (a *app) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// withClient dials, runs f and closes the connection.
func (a *app) withClient(ctx context.Context, f func(*client) error) error {
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}
