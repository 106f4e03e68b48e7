package verifier

import (
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
func ClientCredentials(svid x509svid.Source, bundles x509bundle.Source, server tlsconfig.Authorizer) credentials.TransportCredentials {
	return grpccredentials.MTLSClientCredentials(svid, bundles, server)
}
