package grant

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func sample() *Grant {
	return &Grant{
		ID: "req-01HX3Z",
		Scopes: []Scope{
			{Method: "/bank.v1.Ledger/GetBalance"},
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*", "accounts/vip/42"}},
			{Method: "/grpc.health.v1.Health/*"},
		},
		Approvers: []spiffeid.ID{
			spiffeid.RequireFromString("spiffe://example.org/person/alice"),
			spiffeid.RequireFromString("spiffe://example.org/person/bob"),
		},
		UseLimit: 3,
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		g    *Grant
	}{
		{"full", sample()},
		{"minimal", &Grant{ID: "a", Scopes: []Scope{{Method: "/S/M"}}}},
		{"max-use-limit", &Grant{ID: "a", Scopes: []Scope{{Method: "/S/*"}}, UseLimit: 1<<32 - 1}},
		{"max-scopes", withScopes(MaxScopes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := Marshal(tt.g)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Parse(der)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.g) {
				t.Errorf("round trip:\n got %v\nwant %v", got, tt.g)
			}
			again, err := Marshal(got)
			if err != nil || !bytes.Equal(again, der) {
				t.Errorf("re-marshal differs (err %v)", err)
			}
		})
	}
}

func withScopes(n int) *Grant {
	g := &Grant{ID: "many"}
	for i := range n {
		g.Scopes = append(g.Scopes, Scope{Method: fmt.Sprintf("/pkg.S%d/M", i)})
	}
	return g
}

func TestMarshalRejects(t *testing.T) {
	long := strings.Repeat("a", 200)
	tests := []struct {
		name    string
		mutate  func(*Grant)
		wantErr string
	}{
		{"empty ID", func(g *Grant) { g.ID = "" }, "empty grant ID"},
		{"long ID", func(g *Grant) { g.ID = strings.Repeat("x", 65) }, "grant ID of 65 bytes"},
		{"bad ID char", func(g *Grant) { g.ID = "a b" }, `character ' ' at 1`},
		{"no scopes", func(g *Grant) { g.Scopes = nil }, "no scopes"},
		{"too many scopes", func(g *Grant) { g.Scopes = withScopes(MaxScopes + 1).Scopes }, "65 scopes, more than 64"},
		{"no leading slash", func(g *Grant) { g.Scopes[0].Method = "bank.v1.Ledger/Get" }, "does not start with /"},
		{"no method", func(g *Grant) { g.Scopes[0].Method = "/bank.v1.Ledger" }, "no / between service and method"},
		{"empty method", func(g *Grant) { g.Scopes[0].Method = "/bank.v1.Ledger/" }, "empty method"},
		{"empty service", func(g *Grant) { g.Scopes[0].Method = "//Get" }, "empty service"},
		{"nested path", func(g *Grant) { g.Scopes[0].Method = "/a.B/C/D" }, `method "C/D" is not an identifier`},
		{"partial wildcard", func(g *Grant) { g.Scopes[0].Method = "/a.B/Get*" }, "is not an identifier"},
		{"service wildcard", func(g *Grant) { g.Scopes[0].Method = "/*/Get" }, `service element "*"`},
		{"empty package element", func(g *Grant) { g.Scopes[0].Method = "/a..B/Get" }, `service element ""`},
		{"duplicate scope", func(g *Grant) { g.Scopes[1] = g.Scopes[0] }, "scope 1 duplicates scope 0"},
		{"empty resource", func(g *Grant) { g.Scopes[1].Resources = []string{""} }, "empty resource pattern"},
		{"empty segment", func(g *Grant) { g.Scopes[1].Resources = []string{"a//b"} }, "empty segment"},
		{"dot segment", func(g *Grant) { g.Scopes[1].Resources = []string{"accounts/."} }, `has a "." segment`},
		{"dot-dot segment", func(g *Grant) { g.Scopes[1].Resources = []string{"accounts/../x"} }, `has a ".." segment`},
		{"partial segment wildcard", func(g *Grant) { g.Scopes[1].Resources = []string{"acc*"} }, "* must be a whole segment"},
		{"space in resource", func(g *Grant) { g.Scopes[1].Resources = []string{"a b"} }, "not printable ASCII"},
		{"duplicate resource", func(g *Grant) { g.Scopes[1].Resources = []string{"a", "a"} }, "resource 1 duplicates resource 0"},
		{"too many resources", func(g *Grant) {
			g.Scopes[1].Resources = nil
			for i := range MaxResources + 1 {
				g.Scopes[1].Resources = append(g.Scopes[1].Resources, fmt.Sprint("r", i))
			}
		}, "17 resource patterns"},
		{"duplicate approver", func(g *Grant) { g.Approvers[1] = g.Approvers[0] }, "approver 1 duplicates approver 0"},
		{"zero approver", func(g *Grant) { g.Approvers[0] = spiffeid.ID{} }, "approver 0: empty SPIFFE ID"},
		{"over 4 KiB", func(g *Grant) {
			g.Scopes = nil
			for i := range 40 {
				g.Scopes = append(g.Scopes, Scope{Method: fmt.Sprintf("/pkg.S%d/M", i), Resources: []string{long}})
			}
		}, "more than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := sample()
			tt.mutate(g)
			_, err := Marshal(g)
			if err == nil {
				t.Fatalf("Marshal accepted %v", g)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

// build encodes a grant by hand, so that tests can write what Marshal refuses.
func build(version int64, id string, scopes func(*cryptobyte.Builder), approvers []string, limit int64, extra []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(version)
		addString(b, cbasn1.UTF8String, id)
		b.AddASN1(cbasn1.SEQUENCE, scopes)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, a := range approvers {
				addString(b, cbasn1.IA5String, a)
			}
		})
		b.AddASN1Int64(limit)
		b.AddBytes(extra)
	})
	return b.BytesOrPanic()
}

func oneScope(method string) func(*cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addString(b, cbasn1.UTF8String, method)
			b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := build(1, "g1", oneScope("/a.B/C"), []string{"spiffe://td/x"}, 0, nil)
	if _, err := Parse(good); err != nil {
		t.Fatalf("hand-built grant rejected: %v", err)
	}
	tests := []struct {
		name    string
		der     []byte
		wantErr string
		wantIs  error
	}{
		{"empty", nil, "not a DER SEQUENCE", ErrInvalid},
		{"not DER", []byte("hello"), "not a DER SEQUENCE", ErrInvalid},
		{"trailing bytes", append(append([]byte{}, good...), 0), "1 trailing bytes after the SEQUENCE", ErrInvalid},
		{"trailing field", build(1, "g1", oneScope("/a.B/C"), nil, 0, []byte{0x05, 0x00}), "trailing bytes after useLimit", ErrInvalid},
		{"version 2", build(2, "g1", oneScope("/a.B/C"), nil, 0, nil), "unsupported version 2", ErrUnsupportedVersion},
		{"version 0", build(0, "g1", oneScope("/a.B/C"), nil, 0, nil), "unsupported version 0", ErrUnsupportedVersion},
		{"bad method", build(1, "g1", oneScope("a.B/C"), nil, 0, nil), "scope 0: grant: invalid: method", ErrInvalid},
		{"no scopes", build(1, "g1", func(*cryptobyte.Builder) {}, nil, 0, nil), "no scopes", ErrInvalid},
		{"non-SPIFFE approver", build(1, "g1", oneScope("/a.B/C"), []string{"https://td/x"}, 0, nil), `approver 0: grant: invalid: approver "https://td/x" is not a SPIFFE ID`, ErrInvalid},
		{"negative limit", build(1, "g1", oneScope("/a.B/C"), nil, -1, nil), "useLimit", ErrInvalid},
		{"huge limit", build(1, "g1", oneScope("/a.B/C"), nil, 1<<32, nil), "useLimit", ErrInvalid},
		{"too many scopes", build(1, "g1", func(b *cryptobyte.Builder) {
			for i := range MaxScopes + 1 {
				oneScope(fmt.Sprintf("/a.B/M%d", i))(b)
			}
		}, nil, 0, nil), "more than 64 scopes", ErrInvalid},
		{"over 4 KiB", append(good, make([]byte, MaxExtensionSize)...), "more than 4096", ErrInvalid},
		{"empty ID", build(1, "", oneScope("/a.B/C"), nil, 0, nil), "empty grant ID", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Parse(tt.der)
			if err == nil {
				t.Fatalf("Parse accepted %v", g)
			}
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want %v containing %q", err, tt.wantIs, tt.wantErr)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	g := &Grant{ID: "g", Scopes: []Scope{
		{Method: "/bank.v1.Ledger/GetBalance"},
		{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/*"}},
		{Method: "/bank.v1.Ledger/Refund", Resources: []string{"vip/7/*/history"}},
		{Method: "/ops.v1.Admin/*"},
	}}
	tests := []struct {
		name, method, resource string
		want                   Decision
	}{
		{"exact method", "/bank.v1.Ledger/GetBalance", "", Allowed},
		{"exact method ignores resource", "/bank.v1.Ledger/GetBalance", "anything", Allowed},
		{"other method", "/bank.v1.Ledger/Transfer", "accounts/1", MethodNotInScope},
		{"case matters", "/bank.v1.ledger/GetBalance", "", MethodNotInScope},
		{"prefix of method", "/bank.v1.Ledger/GetBal", "", MethodNotInScope},
		{"service wildcard", "/ops.v1.Admin/Restart", "", Allowed},
		{"service wildcard other service", "/ops.v1.AdminX/Restart", "", MethodNotInScope},
		{"service wildcard nested", "/ops.v1.Admin/Restart/Now", "", MethodNotInScope},
		{"service wildcard empty method", "/ops.v1.Admin/", "", MethodNotInScope},
		{"resource one segment", "/bank.v1.Ledger/Refund", "accounts/42", Allowed},
		{"resource second scope", "/bank.v1.Ledger/Refund", "vip/7/x/history", Allowed},
		{"resource too short", "/bank.v1.Ledger/Refund", "accounts", ResourceNotInScope},
		{"resource too long", "/bank.v1.Ledger/Refund", "accounts/42/history", ResourceNotInScope},
		{"resource other", "/bank.v1.Ledger/Refund", "loans/42", ResourceNotInScope},
		{"resource missing", "/bank.v1.Ledger/Refund", "", ResourceNotInScope},
		{"resource empty segment", "/bank.v1.Ledger/Refund", "accounts/", ResourceNotInScope},
		{"resource wildcard not a literal", "/bank.v1.Ledger/Refund", "vip/8/x/history", ResourceNotInScope},
		{"resource leading slash", "/bank.v1.Ledger/Refund", "/accounts/1", ResourceNotInScope},
		{"resource trailing slash", "/bank.v1.Ledger/Refund", "accounts/1/", ResourceNotInScope},
		{"resource dot-dot under a wildcard", "/bank.v1.Ledger/Refund", "accounts/..", ResourceNotInScope},
		{"resource dot under a wildcard", "/bank.v1.Ledger/Refund", "accounts/.", ResourceNotInScope},
		{"resource dot-dot in the middle", "/bank.v1.Ledger/Refund", "vip/7/../history", ResourceNotInScope},
		{"resource dots inside a segment", "/bank.v1.Ledger/Refund", "accounts/..42", Allowed},
		{"resource wildcard literal star", "/bank.v1.Ledger/Refund", "accounts/*", Allowed},
	}
	m := NewMatcher(g)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := g.Authorize(tt.method, tt.resource); got != tt.want {
				t.Errorf("Authorize(%q, %q) = %v, want %v", tt.method, tt.resource, got, tt.want)
			}
			if got := m.Authorize(tt.method, tt.resource); got != tt.want {
				t.Errorf("Matcher.Authorize(%q, %q) = %v, want %v", tt.method, tt.resource, got, tt.want)
			}
		})
	}
}

func TestAuthorizeDoesNotAllocate(t *testing.T) {
	g := withScopes(16)
	g.Scopes[15].Resources = []string{"a/*/c"}
	m := NewMatcher(g)
	allocs := testing.AllocsPerRun(100, func() {
		if g.Authorize("/pkg.S15/M", "a/b/c") != Allowed || m.Authorize("/pkg.S15/M", "a/b/c") != Allowed {
			t.Fatal("not allowed")
		}
	})
	if allocs != 0 {
		t.Errorf("Authorize allocates %v times per call", allocs)
	}
}

// TestFullUUIDArcUnparsableByGo pins why OID is not the full 2.25.<UUID>:
// Go's parser (which x509.ParseCertificate uses for every extension) rejects
// OID arcs of more than 31 bits.
func TestFullUUIDArcUnparsableByGo(t *testing.T) {
	full, err := x509.ParseOID("2.25.86270714433646812939036085953298996111")
	if err != nil {
		t.Fatal(err)
	}
	body, err := full.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(body) })
	var parsed asn1.ObjectIdentifier
	s := cryptobyte.String(b.BytesOrPanic())
	if s.ReadASN1ObjectIdentifier(&parsed) {
		t.Fatalf("Go now parses %s; the full UUID arc could be used for OID", full)
	}
	var b2 cryptobyte.Builder
	b2.AddASN1ObjectIdentifier(OID)
	s2 := cryptobyte.String(b2.BytesOrPanic())
	if !s2.ReadASN1ObjectIdentifier(&parsed) || !parsed.Equal(OID) {
		t.Fatalf("Go cannot parse OID %v", OID)
	}
}

func TestCanonicalResource(t *testing.T) {
	tests := []struct {
		resource string
		want     bool
	}{
		{"accounts/42", true},
		{"a", true},
		{"accounts/..42", true},
		{"accounts/.x", true},
		{"", false},
		{".", false},
		{"..", false},
		{"accounts/..", false},
		{"accounts/.", false},
		{"accounts/../vip", false},
		{"./accounts", false},
		{"/accounts", false},
		{"accounts/", false},
		{"accounts//42", false},
	}
	for _, tt := range tests {
		if got := CanonicalResource(tt.resource); got != tt.want {
			t.Errorf("CanonicalResource(%q) = %v, want %v", tt.resource, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { CanonicalResource("accounts/42/history") }); n != 0 {
		t.Errorf("CanonicalResource allocates %v times", n)
	}
}
