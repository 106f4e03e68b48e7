package jwtsvid

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzValidate feeds Validate arbitrary token strings: it must never panic,
// and whatever it accepts must hold up: signed by the one key of the bundle,
// for the audience, unexpired, with consistent claims.
func FuzzValidate(f *testing.F) {
	s := fixedSigner(f, fixedClock(t0))
	bundle := s.Bundle()
	identity := mint(f, s, Request{ID: workload, Audience: []string{aud}, TTL: 5 * time.Minute})
	withGrant := mint(f, s, Request{ID: workload, Audience: []string{aud, "b"}, TTL: 5 * time.Minute, Grant: sampleGrant()})
	parts := strings.Split(identity, ".")
	for _, seed := range []string{
		identity,
		withGrant,
		craft(f, "ES256", s.key, `{"alg":"ES256","kid":"`+s.KeyID()+`","typ":"JOSE"}`, claimsJSON(f, workload.String(), t0, map[string]any{"aud": aud})),
		craft(f, "none", nil, headerJSON("none", s.KeyID()), claimsJSON(f, workload.String(), t0, nil)),
		craft(f, "HS256", pkix(f, s.Public()), headerJSON("HS256", s.KeyID()), claimsJSON(f, workload.String(), t0, nil)),
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		"",
		".",
		"..",
		"a.b.c",
		"e30.e30.e30",
		b64(`{"alg":"ES256","kid":"k","kid":"k"}`) + ".e30.c2ln",
		b64(`{"alg":"ES256","kid":"k"}`) + "." + b64(`{"sub":"spiffe://example.org/w","aud":[[[[]]]]}`) + ".c2ln",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := Validate(token, aud, bundle, WithTime(t0))
		if err != nil {
			if c != nil {
				t.Fatalf("claims %+v returned with error %v", c, err)
			}
			if !strings.HasPrefix(err.Error(), "jwtsvid: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		switch {
		case !c.ID.MemberOf(td) || c.Raw["sub"] != c.ID.String():
			t.Fatalf("accepted ID %s (raw sub %v)", c.ID, c.Raw["sub"])
		case c.KeyID != s.KeyID():
			t.Fatalf("accepted kid %q", c.KeyID)
		case !slices.Contains(c.Audience, aud):
			t.Fatalf("accepted audience %q", c.Audience)
		case !t0.Before(c.Expiry.Add(Leeway)):
			t.Fatalf("accepted exp %s at %s", c.Expiry, t0)
		case c.Grant != nil && c.Grant.Validate() != nil:
			t.Fatalf("accepted invalid grant %+v: %v", c.Grant, c.Grant.Validate())
		case len(token) > MaxTokenSize:
			t.Fatalf("accepted a %d-byte token", len(token))
		}
	})
}

// FuzzDecodeObject checks decodeObject against encoding/json: what it
// accepts, json.Unmarshal reads the same; what json.Unmarshal accepts, it
// refuses only for a repeated name or deep nesting.
func FuzzDecodeObject(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":"\u00e9\ud800"}`,
		`[]`, `{"a":}`, `{"a":1} {}`, `{"a":1}  `, `{"a":[1,]}`, `{"a":1e400}`, `{"\u0061":1,"a":2}`,
		`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
		`{"a":[{"b":1},{"b":2}],"c":{"d":{"d":1}}}`, `{"a:":"\\\"","a":{"x":":"}}`, `{"a":[{"b":1,"b":1}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeObject(data)
		var want map[string]any
		wantErr := json.Unmarshal(data, &want)
		if err == nil {
			if wantErr != nil {
				t.Fatalf("decodeObject accepted what json.Unmarshal refuses (%v): %q", wantErr, data)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decodeObject %v, json.Unmarshal %v", got, want)
			}
			return
		}
		if wantErr != nil {
			return
		}
		dup := strings.Contains(err.Error(), "repeats a member name")
		if !dup && !strings.Contains(err.Error(), "nested more than") {
			t.Fatalf("decodeObject refused what json.Unmarshal accepts: %v: %q", err, data)
		}
		if dup != repeatsName(t, data) {
			t.Fatalf("decodeObject says repeated=%v, the token walk disagrees: %q", dup, data)
		}
	})
}

// repeatsName reports, by a walk over json.Decoder tokens, whether some
// object in data, valid JSON, repeats a member name: the slow, obvious
// oracle for decodeObject's counting.
func repeatsName(t *testing.T, data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		names   map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("token walk: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.names != nil && top.wantKey {
			name := tok.(string)
			if top.names[name] {
				return true
			}
			top.names[name] = true
			top.wantKey = false
			continue
		}
		if top != nil && top.names != nil {
			top.wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		}
	}
}
