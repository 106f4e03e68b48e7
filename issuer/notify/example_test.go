package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// jitd builds the notifier from its configuration and hands the issuer the
// notifier's OnChange. Here the endpoint is a local receiver that checks
// each delivery's signature before it trusts the event.
func ExampleNew() {
	secret := []byte("the endpoint's secret, 16+ bytes")
	dir, err := os.MkdirTemp("", "notify-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "webhook.key") // e.g. /etc/jitd/webhook.key
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		log.Fatal(err)
	}

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(secret, body, r.Header.Get("X-Jitgrant-Signature"), time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev notify.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Println("received", ev.Kind, ev.RequestID, "by", ev.EndedBy)
	}))
	defer receiver.Close()

	n, err := notify.New(notify.Config{
		Endpoints: []notify.Endpoint{{
			Name: "security", URL: receiver.URL, // https://hooks.example.com/jitgrant in production
			SecretFile: secretFile, Events: []string{"break_glass", "revoked"},
		}},
		// Audit: the store's audit append, to record events given up on.
		Actor: "spiffe://example.org/jitd",
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = issuer.Config{OnChange: n.OnChange /* , Store, CA, Policies, ID... */}
	// registry.MustRegister(n.Collector())

	// What the issuer's OnChange reports, the notifier turns into events;
	// an endpoint gets only the kinds it asked for.
	n.Notify(notify.Event{Kind: notify.KindCreated, RequestID: "req-7f3a"})
	n.Notify(notify.Event{Kind: notify.KindRevoked, RequestID: "req-7f3a", EndedBy: "spiffe://example.org/person/alice"})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil { // delivers what is queued, for up to 10s
		log.Fatal(err)
	}
	// Output:
	// received revoked req-7f3a by spiffe://example.org/person/alice
}
