// Package grant defines the jitgrant grant: the scopes of a just-in-time
// access grant, carried in a private, non-critical X.509 extension of a
// minutes-long X.509-SVID.
//
// The issuer builds a [Grant], encodes it with [Marshal] (or [Extension]) and
// puts it in the certificate it mints; a protected service reads it back with
// [FromCertificate] once per connection and asks [Grant.Authorize] on every
// RPC. The package has no dependency on the issuer, on storage or on policy:
// both ends of the wire import it.
//
// # Wire format
//
// The extension value is the DER encoding of
//
//	Grant ::= SEQUENCE {
//	    version    INTEGER (1),
//	    id         UTF8String (SIZE (1..64)),
//	    scopes     SEQUENCE SIZE (1..64) OF Scope,
//	    approvers  SEQUENCE SIZE (0..16) OF IA5String,  -- SPIFFE IDs
//	    useLimit   INTEGER (0..4294967295)              -- 0: until expiry
//	}
//
//	Scope ::= SEQUENCE {
//	    method     UTF8String,                          -- "/pkg.Service/Method" or "/pkg.Service/*"
//	    resources  SEQUENCE SIZE (0..16) OF UTF8String  -- empty: any resource
//	}
//
// [Parse] is strict: an unknown version, a field out of its bounds, a malformed
// method or resource pattern, a non-SPIFFE approver, a duplicate, trailing
// bytes or an extension over [MaxExtensionSize] bytes is an error that names
// the field. A later version may add fields; this version reads only version 1
// and rejects every other.
//
// # Matching
//
// A scope's method is either a full gRPC method name, "/pkg.Service/Method",
// matched exactly, or "/pkg.Service/*", which matches every method of that one
// service and nothing of any other (not "/pkg.ServiceX/M", not a nested path).
//
// A resource pattern is a sequence of non-empty segments separated by "/",
// none of them "." or "..": a backend that normalises paths must not read a
// granted name as another one. A segment "*" matches exactly one whole segment of the resource; any other
// segment matches itself exactly. So "accounts/*" matches "accounts/42" but
// neither "accounts" nor "accounts/42/history", and "accounts/*/history"
// matches "accounts/42/history". There is no partial-segment or multi-segment
// wildcard. A resource with an empty, "." or ".." segment matches no pattern
// ([CanonicalResource]), so "accounts/*" does not match "accounts/..". A
// scope with no resource patterns allows the method for any resource; a scope
// with patterns never matches a call whose resource is missing (the empty
// string).
package grant

import (
	"encoding/asn1"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// OID identifies the grant extension: 2.25.152083343.1.
//
// 2.25 is the arc for OIDs made from UUIDs (ITU-T X.667), which needs no
// registration. The UUID generated for jitgrant is
// 40e7229e-1d73-4bf6-9868-927c09109b8f, whose integer is
// 86270714433646812939036085953298996111. Go's certificate parser reads each
// OID arc as a 31-bit integer (x/crypto/cryptobyte) and rejects the whole
// certificate when an extension's OID has a larger arc, so the full UUID arc
// would make grant certificates unreadable to every Go TLS stack, go-spiffe
// included (TestFullUUIDArcUnparsableByGo pins this). The arc used is the
// UUID's low 31 bits, 152083343, followed by 1 for "grant extension". No
// generated UUID maps to an integer that small (the version bits alone put
// every RFC 9562 UUID above 2^64), so it cannot collide with a proper 2.25
// OID. Registering an IANA Private Enterprise Number would make it fully
// clean; OID is the one constant to change then.
var OID = asn1.ObjectIdentifier{2, 25, 152083343, 1}

// Version is the only encoding version this package writes and reads.
const Version = 1

// Bounds on a grant. Parse and Marshal reject anything beyond them.
const (
	MaxExtensionSize   = 4096 // bytes of DER in the extension value
	MaxScopes          = 64
	MaxResources       = 16 // resource patterns per scope
	MaxApprovers       = 16
	MaxIDLength        = 64
	MaxMethodLength    = 256
	MaxResourceLength  = 256
	MaxApproverIDBytes = 2048 // as the SPIFFE ID spec allows
)

// Errors callers branch on. Errors returned by this package wrap one of them.
var (
	// ErrNoGrant means a certificate carries no grant extension: it is a
	// plain identity SVID.
	ErrNoGrant = errors.New("grant: certificate carries no grant")
	// ErrInvalid means a grant, or its encoding, breaks a rule of this
	// package; the wrapping error names the field.
	ErrInvalid = errors.New("grant: invalid")
	// ErrUnsupportedVersion means the encoding's version is not [Version].
	ErrUnsupportedVersion = errors.New("grant: unsupported version")
)

// Grant is what an approved request allows: which methods (and resources) the
// holder of the certificate may call, who approved it, and how many calls it
// is good for. The holder's identity and the grant's validity are the
// certificate's own URI SAN and validity, not repeated here.
type Grant struct {
	// ID identifies the grant: the issuer's request ID. 1 to 64 characters
	// from [A-Za-z0-9._-].
	ID string
	// Scopes lists what the grant allows; at least one.
	Scopes []Scope
	// Approvers are the SPIFFE IDs that approved the request, in approval
	// order; empty for an auto-approved grant.
	Approvers []spiffeid.ID
	// UseLimit is how many RPCs the grant allows: 0 means any number until
	// expiry, 1 a one-shot grant.
	UseLimit uint32
}

// Scope is one method (or every method of one service) and, optionally, the
// resources it is limited to.
type Scope struct {
	// Method is "/pkg.Service/Method" or "/pkg.Service/*".
	Method string
	// Resources are resource patterns (see the package doc); empty means any
	// resource.
	Resources []string
}
