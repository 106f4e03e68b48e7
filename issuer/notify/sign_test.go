package notify_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/issuer/notify"
)

func TestVerify(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	body := []byte(`{"id":"x","kind":"issued"}`)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	good := notify.Sign(secret, body, t0)
	v1 := good[strings.Index(good, "v1="):]
	other := notify.Sign([]byte("another secret, 16+ bytes"), body, t0)
	tests := []struct {
		name      string
		secret    []byte
		body      []byte
		header    string
		now       time.Time
		tolerance time.Duration
		wantErr   string // "": accepted
	}{
		{name: "good", header: good},
		{name: "good, receiver a little ahead", header: good, now: t0.Add(4 * time.Minute)},
		{name: "good, receiver a little behind", header: good, now: t0.Add(-4 * time.Minute)},
		{name: "exactly at the tolerance", header: good, now: t0.Add(5 * time.Minute)},
		{name: "custom tolerance", header: good, now: t0.Add(50 * time.Minute), tolerance: time.Hour},
		{name: "several v1, one matches", header: other + "," + v1},
		{name: "unknown elements ignored", header: good + ",v0=whatever,x=1"},
		{name: "spaces around elements", header: strings.ReplaceAll(good, ",", " , ")},
		{name: "wrong secret", secret: []byte("not the secret, but long"), header: good, wantErr: "no v1 signature matches"},
		{name: "tampered body", body: []byte(`{"id":"x","kind":"revoked"}`), header: good, wantErr: "no v1 signature matches"},
		{name: "timestamp changed", header: "t=1893553446," + v1, wantErr: "no v1 signature matches"},
		{name: "stale", header: good, now: t0.Add(6 * time.Minute), wantErr: "signed 6m0s ago, more than the tolerance of 5m0s"},
		{name: "from the future", header: good, now: t0.Add(-6 * time.Minute), wantErr: "signed 6m0s in the future"},
		{name: "empty header", header: "", wantErr: `element "" is not key=value`},
		{name: "no t", header: v1, wantErr: "no t"},
		{name: "no v1", header: "t=1893553445", wantErr: "no v1 signature"},
		{name: "negative t", header: "t=-1," + v1, wantErr: `t="-1" is not Unix seconds`},
		{name: "t not a number", header: "t=12a," + v1, wantErr: "is not Unix seconds"},
		{name: "t too long", header: "t=1234567890123456789," + v1, wantErr: "is not Unix seconds"},
		{name: "two t", header: "t=1893553445,t=1893553445," + v1, wantErr: "more than one t"},
		{name: "v1 not hex", header: "t=1893553445,v1=" + strings.Repeat("z", 64), wantErr: "v1 is not 64 hex digits"},
		{name: "v1 too short", header: good[:len(good)-2], wantErr: "v1 is not 64 hex digits"},
		{name: "element without =", header: good + ",junk", wantErr: `element "junk" is not key=value`},
		{name: "header too long", header: good + strings.Repeat(",v0=x", 300), wantErr: "at most 1024"},
		{name: "empty secret", secret: []byte{}, header: good, wantErr: "empty secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec, b, now := secret, body, t0
			if tt.secret != nil {
				sec = tt.secret
			}
			if tt.body != nil {
				b = tt.body
			}
			if !tt.now.IsZero() {
				now = tt.now
			}
			err := notify.Verify(sec, b, tt.header, now, tt.tolerance)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted %q, want an error containing %q", tt.header, tt.wantErr)
			}
			if !errors.Is(err, notify.ErrSignature) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify = %v, want ErrSignature and %q", err, tt.wantErr)
			}
		})
	}
}

func TestSignFormat(t *testing.T) {
	got := notify.Sign([]byte("key"), []byte("body"), time.Unix(1700000000, 0))
	// printf '1700000000.body' | openssl dgst -sha256 -hmac key
	want := "t=1700000000,v1=47b6ce0fca59474308e2921c247cb2493dce6b8101d90ac05bd0c6a37d0e046e"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

// FuzzVerify checks that Verify never panics on any header, and that what
// Sign makes verifies while any change to the body does not.
func FuzzVerify(f *testing.F) {
	secret := []byte("0123456789abcdef")
	body := []byte(`{"kind":"issued"}`)
	f.Add(secret, body, notify.Sign(secret, body, time.Unix(1700000000, 0)), int64(1700000000))
	f.Add(secret, body, "t=1700000000,v1=00,v1=zz", int64(0))
	f.Add([]byte{}, []byte{}, "t=,v1=", int64(-1))
	f.Add(secret, body, ",,,=,t==,v1==", int64(1<<62))
	f.Fuzz(func(t *testing.T, secret, body []byte, header string, now int64) {
		err := notify.Verify(secret, body, header, time.Unix(now, 0), 0)
		if err != nil && !errors.Is(err, notify.ErrSignature) {
			t.Fatalf("Verify = %v, not wrapping ErrSignature", err)
		}
		if len(secret) == 0 || now < 0 || now > 1<<40 {
			return
		}
		sig := notify.Sign(secret, body, time.Unix(now, 0))
		if err := notify.Verify(secret, body, sig, time.Unix(now, 0), time.Second); err != nil {
			t.Fatalf("Verify(Sign) = %v", err)
		}
		if err := notify.Verify(secret, append(body[:len(body):len(body)], 'x'), sig, time.Unix(now, 0), time.Second); err == nil {
			t.Fatal("Verify accepted a changed body")
		}
	})
}
