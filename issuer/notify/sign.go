package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery, besides Content-Type: application/json.
const (
	// HeaderEvent holds the event's Kind.
	HeaderEvent = "X-Jitgrant-Event"
	// HeaderDelivery holds the event's ID, the same across retries.
	HeaderDelivery = "X-Jitgrant-Delivery"
	// HeaderSignature holds "t=<unix seconds>,v1=<hex HMAC-SHA256>" (see
	// Sign).
	HeaderSignature = "X-Jitgrant-Signature"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// ErrSignature is wrapped by every error Verify returns.
var ErrSignature = errors.New("notify: invalid webhook signature")

// maxSignatureHeader bounds the header Verify parses.
const maxSignatureHeader = 1024

// Sign returns the signature header of body sent at t:
// "t=<t in Unix seconds>,v1=<hex HMAC-SHA256 with key secret of "<t>.<body>">".
// Covering the timestamp lets a receiver refuse a replayed delivery.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a delivery's signature header against its raw body, as a
// receiver must before trusting it: one of the header's v1 signatures must
// be the HMAC-SHA256 of "<t>.<body>" under secret (compared in constant
// time), and t must be within tolerance of now, either way (tolerance <= 0
// means DefaultTolerance). Elements other than t and v1 are ignored, so that
// a header may carry several v1 signatures (during a key rotation) or later
// schemes. Every error wraps ErrSignature.
func Verify(secret, body []byte, header string, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: empty secret", ErrSignature)
	}
	if len(header) > maxSignatureHeader {
		return fmt.Errorf("%w: header is %d bytes, at most %d", ErrSignature, len(header), maxSignatureHeader)
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed header: element %q is not key=value", ErrSignature, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: malformed header: more than one t", ErrSignature)
			}
			if !digits(v) {
				return fmt.Errorf("%w: malformed header: t=%q is not Unix seconds", ErrSignature, v)
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: malformed header: v1 is not %d hex digits", ErrSignature, 2*sha256.Size)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: malformed header: no t", ErrSignature)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header: no v1 signature", ErrSignature)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		ok = hmac.Equal(sig, want) || ok
	}
	if !ok {
		return fmt.Errorf("%w: no v1 signature matches (wrong secret or altered body)", ErrSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sec, _ := strconv.ParseInt(ts, 10, 64) // digits checked it fits
	switch age := now.Sub(time.Unix(sec, 0)); {
	case age > tolerance:
		return fmt.Errorf("%w: signed %s ago, more than the tolerance of %s (replayed?)", ErrSignature, age.Round(time.Second), tolerance)
	case age < -tolerance:
		return fmt.Errorf("%w: signed %s in the future, more than the tolerance of %s", ErrSignature, (-age).Round(time.Second), tolerance)
	}
	return nil
}

// digits reports whether s is 1 to 18 decimal digits (so it fits an int64).
func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
