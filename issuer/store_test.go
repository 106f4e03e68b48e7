package issuer_test

import (
	"testing"

	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/storetest"
)

func TestBadgerStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (issuer.Store, storetest.Entries) {
		e := newEnv(t)
		return e.store, e.log
	})
}
