package verifier

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultPublicMethods returns the methods that need a verified peer but no
// grant when Config.PublicMethods is nil: gRPC health checking and server
// reflection.
func DefaultPublicMethods() []string {
	return []string{
		"/grpc.health.v1.Health/*",
		"/grpc.reflection.v1.ServerReflection/*",
		"/grpc.reflection.v1alpha.ServerReflection/*",
	}
}

// RevocationChecker tells the verifier whether a grant has been revoked. It is
// asked on every RPC that carries a grant, so an implementation must answer
// from memory, without I/O, and should not allocate. [RevocationSet] is the
// in-memory implementation.
type RevocationChecker interface {
	// Revoked reports whether the grant with this ID is revoked.
	Revoked(grantID string) bool
}

// Freshness is implemented by a RevocationChecker that can lose contact with
// its source (a [Feed]). It is asked on every RPC that carries a grant and
// must answer from memory.
type Freshness interface {
	// RefuseStale reports whether a grant issued at issued must be refused
	// because the revocation data is stale. The verifier passes the issue
	// time to the second: the certificate's NotBefore plus [IssuerBackdate].
	RefuseStale(issued time.Time) bool
}

// IssuerBackdate is how far before its issue time (to the second) the issuer
// dates a certificate's NotBefore, so that a verifier whose clock is a little
// behind accepts it. The verifier adds it back to a grant certificate's
// NotBefore to learn when the grant was issued (see [KeepIssuedBefore]). It
// is issuer/ca.Backdate; a test keeps the two equal.
const IssuerBackdate = 10 * time.Second

// UseReporter is implemented by a RevocationChecker that tells the issuer
// about uses of grants with a use limit (a [Feed]). ReportUse is called on
// the RPC path after a use is counted, so it must not block.
type UseReporter interface {
	ReportUse(grantID string)
}

// Config configures a [Verifier].
type Config struct {
	// SVIDSource supplies the service's own X.509-SVID. Required.
	SVIDSource x509svid.Source
	// BundleSource supplies the trust bundles that client chains are verified
	// against. Required.
	BundleSource x509bundle.Source
	// Authorizer decides which verified peer IDs may connect at all. Default:
	// any ID whose chain verifies against BundleSource.
	Authorizer tlsconfig.Authorizer
	// IdentityMethods accept identity SVIDs only: a verified peer whose
	// certificate carries no grant. A grant certificate is refused on them
	// (PermissionDenied, "a grant certificate is not an identity"), logged
	// and counted with the reason grant_not_identity: a grant says what its
	// holder may call on protected services, it does not stand for the
	// holder anywhere else. Each is a full method name or "/pkg.Service/*";
	// they are checked before PublicMethods. An issuer's API lists all its
	// methods here. Default: none.
	IdentityMethods []string
	// PublicMethods need a verified peer but no grant. Each is a full method
	// name or "/pkg.Service/*". nil means DefaultPublicMethods(); an empty,
	// non-nil slice means none.
	PublicMethods []string
	// ResourceFields names, per full method name, the request field that
	// holds the resource the call acts on: a string field, or a dotted path
	// through singular message fields ("account.id"). Methods not listed have
	// no resource; a grant scope limited to resources then never matches
	// them (fail closed, reason resource_scope_without_field). A resource
	// read from a request that is not canonical (an empty, "." or ".."
	// segment, see grant.CanonicalResource) is refused (reason
	// resource_not_canonical), whatever the grant says.
	ResourceFields map[string]string
	// Revocations answers whether a grant is revoked. Default: a new, empty
	// RevocationSet (see Verifier.Revocations). When it also implements
	// Freshness or UseReporter (a Feed does), the verifier uses those too.
	Revocations RevocationChecker
	// Clock returns the current time. Default: time.Now. It is used in the
	// handshake (certificate validity) and on every RPC (grant expiry).
	Clock func() time.Time
	// Logger receives one record per denial and per failed handshake.
	// Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.SVIDSource == nil {
		return errors.New("verifier: config: SVIDSource is required")
	}
	if c.BundleSource == nil {
		return errors.New("verifier: config: BundleSource is required")
	}
	if c.Authorizer == nil {
		c.Authorizer = tlsconfig.AuthorizeAny()
	}
	if c.PublicMethods == nil {
		c.PublicMethods = DefaultPublicMethods()
	}
	for _, m := range c.PublicMethods {
		if err := grant.ValidateMethod(m); err != nil {
			return fmt.Errorf("verifier: config: public method: %w", err)
		}
	}
	for _, m := range c.IdentityMethods {
		if err := grant.ValidateMethod(m); err != nil {
			return fmt.Errorf("verifier: config: identity method: %w", err)
		}
	}
	for m, field := range c.ResourceFields {
		if err := grant.ValidateMethod(m); err != nil || strings.HasSuffix(m, "/*") {
			return fmt.Errorf("verifier: config: resource field for %q: want a full method name /pkg.Service/Method", m)
		}
		if field == "" || strings.HasPrefix(field, ".") || strings.HasSuffix(field, ".") || strings.Contains(field, "..") {
			return fmt.Errorf("verifier: config: resource field %q for %s: want a field name or dotted path", field, m)
		}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Revocations == nil {
		c.Revocations = NewRevocationSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
