//go:build !cgo || nopkcs11

package ca

import (
	"context"
	"strings"
	"testing"
)

// TestKMSWithoutCgo: a build without cgo has no PKCS#11, and says so.
func TestKMSWithoutCgo(t *testing.T) {
	_, err := GenerateKMS(context.Background(), Config{TrustDomain: td, Clock: fixedClock(t0)},
		"pkcs11:module-path=libsofthsm2.so;token=jitgrant;id=01;object=ca?pin-value=1234")
	if err == nil || !strings.Contains(err.Error(), "compiled without cgo or PKCS#11 support") {
		t.Fatalf("GenerateKMS without cgo: %v, want an error saying PKCS#11 is not built in", err)
	}
}
