// Package wlapi is jitd's SPIFFE Workload API server: it hands local
// workloads, attested by the kernel over a Unix socket, their X.509- and
// JWT-SVIDs, their trust bundles, and the SVIDs of the grants they hold.
//
// # Contract
//
// The server follows the SPIFFE Workload API specification:
//
//   - Every call must carry the metadata header "workload.spiffe.io: true";
//     without it the call fails with InvalidArgument before anything else.
//   - The caller is then attested (package attest: SO_PEERCRED, /proc) and
//     matched against the registration entries in force. A caller that no
//     entry matches, or that cannot be attested, gets PermissionDenied.
//   - Streams send their first message at once, and every message carries
//     the full current set, never a delta.
//
// # X.509-SVIDs
//
// A FetchX509SVID message holds, in order, one identity SVID per matching
// entry (the first entry's is the default SVID, which clients that take one
// SVID use), then one SVID per active grant of the first entry's SPIFFE ID
// that was requested without a CSR. A grant requested with a CSR is never
// served here: its key stays with the requester, which fetches the
// certificate with the issuer API's FetchGrant. Identity SVIDs have an empty
// hint; a grant SVID's hint is its grant ID, so hints are unique and a client
// picks a grant with verifier.PickHint. A grant SVID carries the grant
// extension (package grant) and ends exactly with the grant. A grant SVID
// that cannot be minted is left out of the message (and logged), never
// failing it: the identity SVIDs and the other grants are always sent.
//
// A new message is pushed on an open stream when the set changes: a request
// of the default SPIFFE ID is issued, revoked or expires (the issuer's
// change feed); a grant reaches its end (dropped on time, before the sweeper
// marks it EXPIRED); or an identity SVID reaches about half of its life
// (rotation, brought forward by Config.Jitter). The caller is attested again
// before every pushed message, so that a caller whose entries changed, or
// that exited, stops receiving SVIDs.
//
// Minted SVIDs are cached in memory, never on disk: identities per SPIFFE ID
// and TTL until rotation, grants per grant ID until the grant ends, so that
// every stream of a workload gets the same key and certificate until they
// rotate. Times come from Config.Clock; real timers only wake the streams.
// Server.Refresh wakes every stream to look again: jitd calls it after
// reloading registration entries, and tests after moving a fake clock.
//
// # Bundles
//
// FetchX509Bundles and FetchJWTBundles send the issuer's own trust domain
// only (no federation yet). The CA and JWT key are fixed for a Server's
// life, so the bundle streams send one message and then stay open; rotating
// the CA or JWT key means building a new Server, which ends every stream, and
// clients reconnect.
//
// # JWT-SVIDs
//
// FetchJWTSVID returns an identity token per matching entry (or only for
// the requested spiffe_id, which must be one of the caller's) and, for the
// default SPIFFE ID, one token per active grant with hint = grant ID, whose
// expiry never passes the grant's end. ValidateJWTSVID checks a token against
// the issuer's JWT bundle at Config.Clock's time.
package wlapi
