// Package jwtsvid mints and validates the JWT-SVIDs of the jitgrant issuer:
// the bearer-token form of a workload's identity, and of a grant, that the
// SPIFFE Workload API hands out through FetchJWTSVID, publishes keys for
// through FetchJWTBundles and checks in ValidateJWTSVID.
//
// A [Signer] holds one ECDSA P-256 key of one trust domain, in memory
// ([GenerateSigner], [LoadSigner]) or behind a [crypto.Signer] such as a
// PKCS#11 token's key ([NewSigner], which takes P-384 too). [Signer.Mint]
// signs a token for a SPIFFE ID of that trust domain; [Signer.Bundle] and
// [NewBundle] give the JWT bundle (JWKS) that verifies it, [MarshalJWKS] its
// bytes for FetchJWTBundles; [Validate] checks a token against a bundle
// source and one audience, as ValidateJWTSVID must.
//
// # Token contract
//
// Every token follows the SPIFFE JWT-SVID specification: JWS Compact
// Serialization, and a protected header with exactly
//
//	{"alg":"ES256","kid":"<key ID>","typ":"JWT"}
//
// ("ES384" for a P-384 key given to [NewSigner]),
// where the key ID is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url without padding. The registered claims are
//
//	sub  string    the workload's SPIFFE ID
//	aud  [string]  1 to MaxAudiences audiences, always a JSON array
//	exp  number    seconds since the epoch: iat + min(TTL, MaxTTL), never
//	               after the request's NotAfter
//	iat  number    seconds since the epoch: the minting time
//	jti  string    128 random bits, base64url without padding
//
// A grant's token (a [Request] with a Grant) carries the grant in three
// private claims, the names of which are the contract between the issuer and
// every relying party that reads them:
//
//	jitgrant_grant_id   string    the grant ID: 1 to 64 of [A-Za-z0-9._-]
//	jitgrant_scopes     [object]  one {"method": string, "resources": [string]}
//	                              per scope, in the grant's order; "resources"
//	                              is [] when the scope allows any resource
//	jitgrant_use_limit  number    the use limit; absent when 0 (until expiry)
//
// For example:
//
//	{
//	  "sub": "spiffe://example.org/ns/prod/sa/ledger-client",
//	  "aud": ["spiffe://example.org/ledger"],
//	  "exp": 1772366700, "iat": 1772366400, "jti": "0dNmSxRS2Ke5wAfBmYs3Cw",
//	  "jitgrant_grant_id": "req-01HX3Z",
//	  "jitgrant_scopes": [
//	    {"method": "/bank.v1.Ledger/GetBalance", "resources": []},
//	    {"method": "/bank.v1.Ledger/Refund", "resources": ["accounts/*"]}
//	  ],
//	  "jitgrant_use_limit": 1
//	}
//
// The scopes mean what they mean in the grant extension of a grant's
// X.509-SVID (package grant). The grant's approvers are not in the token: a
// bearer token travels to every audience, and who approved is in the audit
// log. A token has no "iss"; its trust domain is that of "sub".
//
// # Validation
//
// [Validate] refuses a token unless all of these hold: it is at most
// [MaxTokenSize] bytes of JWS Compact Serialization in canonical base64url;
// header and payload are JSON objects without repeated member names; the
// header has no parameter but alg, kid and typ; alg is one of the nine the
// JWT-SVID specification allows (RS, ES and PS with SHA-256, 384 or 512;
// never "none", HS* or EdDSA); kid is set (the specification makes it
// optional, go-spiffe and SPIRE require it); typ, if set, is "JWT" or
// "JOSE"; sub is a SPIFFE ID; the bundle source holds a bundle for its trust
// domain, with a key under kid that fits alg; the signature verifies with
// that key; exp is set and now is before exp + [Leeway]; nbf and iat, if
// set, are not after now + [Leeway]; aud holds the audience asked for; and
// the jitgrant claims, if any, form a valid grant. The time is
// [time.Now] unless [WithTime] says otherwise.
//
// A grant is reported for a token of any trust domain the bundle source
// holds. A relying party that honors grants from its own issuer only must
// check the trust domain of [Claims.ID].
package jwtsvid
