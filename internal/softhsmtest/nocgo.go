//go:build !cgo || nopkcs11

package softhsmtest

// pkcs11Built reports whether go.step.sm/crypto/kms/pkcs11 is the real
// package (cgo) rather than its stub.
const pkcs11Built = false
