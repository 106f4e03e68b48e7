package verifier_test

import (
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"google.golang.org/grpc/codes"
)

// TestExtendedGrant: a grant extended by the issuer has two certificates
// with one grant ID, the old one ending first. A connection opened with
// the old certificate is refused after the old end, although a newer
// certificate of the same grant exists and serves new connections; the
// grant's use count spans both certificates and outlives the old one's end
// (a sweep after it must not reset the count).
func TestExtendedGrant(t *testing.T) {
	e := newEnv(t, nil)
	g := &grant.Grant{ID: "extended", Scopes: scopes(mGetBalance), UseLimit: 4}
	oldCC := e.dial(e.mint(clientID, 2*time.Minute, g))
	runRPCs(t, oldCC, "extended", []rpc{{mGetBalance, "", codes.OK, ""}}) // use 1

	extended := e.mint(clientID, 6*time.Minute, g) // the issuer's new SVID, same grant ID
	newCC := e.dial(extended)
	runRPCs(t, newCC, "extended", []rpc{{mGetBalance, "", codes.OK, ""}}) // use 2

	e.clock.Add(3 * time.Minute) // past the old certificate's end, before the new one's
	runRPCs(t, oldCC, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "jitgrant: grant expired"}})
	runRPCs(t, newCC, "extended", []rpc{{mGetBalance, "", codes.OK, ""}}) // use 3

	// A reconnect with the new SVID (as go-spiffe's X509Source does) works,
	// and its handshake sweeps what ended: the count must survive.
	again := e.dial(extended)
	runRPCs(t, again, "extended", []rpc{{mGetBalance, "", codes.OK, ""}}) // use 4
	last := e.dial(extended)
	runRPCs(t, last, "", []rpc{{mGetBalance, "", codes.PermissionDenied, "use limit reached"}})
	if _, err := call(oldCC, mGetBalance, ""); err == nil {
		t.Error("the old certificate's connection was served after its end")
	}
}
