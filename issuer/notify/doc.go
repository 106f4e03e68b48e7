// Package notify delivers jitgrant events to webhooks: a request created,
// decided, a grant issued, expiring soon, revoked or expired, a break-glass
// request.
//
// # Contract
//
//   - [Notifier.Notify] never blocks the caller (the issuer calls it from
//     [issuer.Config.OnChange], through [Notifier.OnChange]). Each endpoint
//     has its own bounded queue and goroutine: a slow or dead endpoint
//     delays no other, and when its queue is full the event is dropped.
//   - An event is POSTed as JSON (see [Event]) with the headers
//     Content-Type: application/json, X-Jitgrant-Event (the kind),
//     X-Jitgrant-Delivery (the event's ID, the same across retries) and
//     X-Jitgrant-Signature: "t=<unix seconds>,v1=<hex HMAC-SHA256 of
//     "<t>.<body>">" keyed with the endpoint's secret (see [Sign]). The
//     timestamp is signed afresh for each attempt; receivers check it with
//     [Verify], which also refuses a replay older than its tolerance, and
//     drop duplicates by delivery ID.
//   - The body's "text" field is a one-line Slack mrkdwn summary, so a
//     Slack-compatible incoming webhook URL works as an endpoint as is.
//   - A network error, a timeout, 408, 429 or 5xx is retried, up to
//     Config.MaxAttempts attempts, after a doubling, jittered backoff that
//     also honours Retry-After up to Config.MaxBackoff. Any other status
//     (3xx included: redirects are never followed) fails at once.
//   - An event given up on (failed, or dropped) is logged, counted in
//     jitgrant_webhook_deliveries_total and recorded through Config.Audit
//     as an audit.ActionWebhookFailed entry whose subject is the request ID
//     and whose details name the endpoint, event, kind, result, attempts,
//     error and HTTP status. An approval never waits for any of it.
//   - Secrets never reach logs, metrics or audit entries: an endpoint
//     appears by its name and its scheme and host only, since a URL's
//     userinfo, path (as in Slack's) and query may hold a token.
//
// Events live only in memory: those queued when jitd stops are delivered
// until [Notifier.Close]'s context ends, then abandoned (and counted).
//
// # Receiving
//
// A receiver reads the raw body, checks it before parsing it, and answers
// 2xx quickly:
//
//	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//	if err != nil { ... }
//	if err := notify.Verify(secret, body, r.Header.Get(notify.HeaderSignature), time.Now(), 0); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//	var ev notify.Event
//	err = json.Unmarshal(body, &ev)
package notify
