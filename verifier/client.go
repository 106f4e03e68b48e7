package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// PickHint returns an X.509-SVID picker for go-spiffe's
// workloadapi.WithDefaultX509SVIDPicker that picks the SVID whose hint is
// hint. The issuer sets a grant SVID's hint to its grant ID. When no SVID has
// that hint the picker returns nil, and the source then refuses to hand out a
// certificate rather than fall back to another one.
func PickHint(hint string) func([]*x509svid.SVID) *x509svid.SVID {
	return func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, s := range svids {
			if s.Hint == hint {
				return s
			}
		}
		return nil
	}
}

// ClientCredentials returns gRPC client transport credentials that present
// the SVID from svid (for a grant, a workloadapi.X509Source built with
// PickHint) and accept only a server whose chain verifies against bundles
// and whose ID server authorizes (for example tlsconfig.AuthorizeID).
//
// A server certificate that is not yet valid by this machine's clock fails
// the handshake with an error that says so and names the clock skew.
func ClientCredentials(svid x509svid.Source, bundles x509bundle.Source, server tlsconfig.Authorizer) credentials.TransportCredentials {
	return clientCreds{grpccredentials.MTLSClientCredentials(svid, bundles, server)}
}

// clientCreds adds a clock hint to go-spiffe's client credentials.
type clientCreds struct {
	credentials.TransportCredentials
}

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	return conn, ai, clockHint(err, time.Now())
}

func (c clientCreds) Clone() credentials.TransportCredentials {
	return clientCreds{c.TransportCredentials.Clone()}
}

// clockHint wraps a handshake error caused by a server certificate that is
// not yet valid at now with one that names the clock skew.
func clockHint(err error, now time.Time) error {
	var invalid x509.CertificateInvalidError
	if err == nil || !errors.As(err, &invalid) || invalid.Reason != x509.Expired || invalid.Cert == nil || !now.Before(invalid.Cert.NotBefore) {
		return err
	}
	return fmt.Errorf("verifier: the server's certificate starts at %s, %s ahead of this machine's clock: check this machine's clock (NTP): %w",
		invalid.Cert.NotBefore.UTC().Format(time.RFC3339), invalid.Cert.NotBefore.Sub(now).Round(time.Second), err)
}

// WorkloadDialOptions returns the dial options with which a workload calls a
// protected service with one of its grants: an X509Source on the SPIFFE
// Workload API (SPIFFE_ENDPOINT_SOCKET, or the address in opts) that picks
// the SVID whose hint is the grant ID, and client credentials that present
// it and accept only a server that server authorizes. The source follows
// the stream, so a renewed grant SVID is used for new connections as soon
// as it arrives, and once the grant is gone no certificate is presented.
// Close the returned source when done.
func WorkloadDialOptions(ctx context.Context, grantID string, server tlsconfig.Authorizer, opts ...workloadapi.X509SourceOption) ([]grpc.DialOption, *workloadapi.X509Source, error) {
	opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(PickHint(grantID)))
	source, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("verifier: workload API: %w", err)
	}
	creds := ClientCredentials(source, source, server)
	return []grpc.DialOption{grpc.WithTransportCredentials(creds)}, source, nil
}
