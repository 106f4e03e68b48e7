// Package verifier is what a gRPC service imports to accept jitgrant grants.
//
// A grant is a minutes-long X.509-SVID whose private extension (package
// grant) lists the methods, and optionally the resources, its holder may
// call. The verifier checks it twice:
//
//   - In the mTLS handshake, transport credentials built on go-spiffe's
//     tlsconfig verify the client's chain against a trust bundle source and
//     parse the grant once per connection. The handshake returns grpc-go's
//     own [credentials.TLSInfo], with SPIFFEID set, so that grpc-go's authz
//     interceptor and any other code that type-asserts it keeps working.
//   - On every RPC, unary and stream interceptors decide, in this order:
//     verified peer (else Unauthenticated), certificate valid now (the
//     handshake admits one not yet valid by the server's clock, so that the
//     refusal can name the clock skew), identity methods (identity SVIDs
//     only: a grant certificate is refused), public methods, grant present,
//     resource well formed (no empty, "." or ".." segment), method in scope,
//     resource in scope, not expired now (a connection can outlive its
//     certificate), not revoked, use limit not exceeded. Each denial is
//     PermissionDenied with a short message; the detail goes to the log and
//     to the decision counters.
//
// [Verifier.ServerOptions] returns the credentials and both interceptors
// together, so that nobody installs one without the other:
//
//	v, err := verifier.New(verifier.Config{
//		SVIDSource:   source, // the service's own SVID, e.g. a workloadapi.X509Source
//		BundleSource: source, // the trust bundles, e.g. the same source
//		ResourceFields: map[string]string{
//			"/bank.v1.Ledger/Refund": "account",
//		},
//	})
//	if err != nil { ... }
//	srv := grpc.NewServer(v.ServerOptions()...)
//
// Handlers read the grant with [GrantFromContext] and the caller's SPIFFE ID
// with [PeerIDFromContext]. Code that decides who the caller is (an
// authentication, a permission check) uses [IdentityFromContext], which
// returns nothing for a grant certificate: a grant is not an identity.
//
// The per-RPC decision does no I/O and does not allocate: the grant is parsed
// once per connection into a cache keyed by the peer's leaf certificate and
// dropped when the connection closes or the certificate expires; revocations
// are answered from memory ([RevocationSet]); use counts are atomic counters
// shared by every connection of one grant. The one allocation per RPC is the
// context value that carries the grant to the handler.
//
// An extended grant has several certificates with one grant ID, each new
// one ending later. Each connection is judged by the certificate it was
// opened with: one opened with the old certificate is refused once that
// ends, even while the new one serves new connections, so a client
// reconnects with the new SVID (go-spiffe's X509Source gets it from the
// Workload API; a new connection's handshake presents it). The grant's
// use count and revocation are shared by all its certificates, and the use
// count lives until the latest one ends.
//
// The package depends on neither the issuer nor its storage or policy
// engine.
package verifier
