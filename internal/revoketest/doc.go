// Package revoketest holds the end-to-end tests of revocation: a real jitd,
// protected services whose verifiers follow the issuer's revocation feed,
// and clients holding grants.
package revoketest

import "os"

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }
