package notify_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/notify"
)

// A receiver checks the signature over the raw body, with its own clock,
// before it trusts the event.
func ExampleVerify() {
	secret := []byte("the endpoint's secret, 16+ bytes")
	body := []byte(`{"id":"9rgjzb1q2m1tvk0d4wdj5d3h8c","kind":"revoked"}`)
	sent := time.Unix(1700000000, 0)
	header := notify.Sign(secret, body, sent) // what jitd sends in X-Jitgrant-Signature

	fmt.Println(notify.Verify(secret, body, header, sent.Add(30*time.Second), 0))
	fmt.Println(notify.Verify(secret, body, header, sent.Add(time.Hour), 0))
	fmt.Println(notify.Verify(secret, []byte(`{"kind":"issued"}`), header, sent, 0))
	// Output:
	// <nil>
	// notify: invalid webhook signature: signed 1h0m0s ago, more than the tolerance of 5m0s (replayed?)
	// notify: invalid webhook signature: no v1 signature matches (wrong secret or altered body)
}

// jitd builds the notifier from its configuration, audits through its
// store, and hands the issuer the notifier's OnChange.
func ExampleNew() {
	var store *issuer.BadgerStore // opened earlier
	n, err := notify.New(notify.Config{
		Endpoints: []notify.Endpoint{{
			Name: "security", URL: "https://hooks.example.com/jitgrant",
			SecretFile: "/etc/jitd/webhook.key", Events: []string{"break_glass", "revoked"},
		}},
		Audit: store.Audit,
		Actor: "spiffe://example.org/jitd",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx) // deliver what is queued, for up to 10s
	}()
	_ = issuer.Config{Store: store, OnChange: n.OnChange /* , CA, Policies, ID... */}
	// registry.MustRegister(n.Collector())
}
