// Package e2e holds jitgrant's end-to-end tests: a real jitd (data
// directory, policy file, Badger store, audit log, mTLS issuer API) started
// in-process, people enrolled with jitd enroll, everything driven through
// jitctl's command line in-process, and a verifier-protected gRPC service
// that accepts or refuses the grants jitctl fetched. One test also builds
// the real binaries and runs them as processes. The package has no code of
// its own; see its _test.go files.
package e2e
