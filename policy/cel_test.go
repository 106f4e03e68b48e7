package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/jitgrant/jitgrant/grant"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestConditionVariables checks every variable a condition sees, and that a
// requested scope behaves as a plain CEL map however it is used.
func TestConditionVariables(t *testing.T) {
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	req := Request{
		Requester: spiffeid.RequireFromString("spiffe://ex.org/person/alice"),
		Scopes: []grant.Scope{
			{Method: "/bank.v1.Ledger/Refund", Resources: []string{"accounts/1", "accounts/2"}},
			{Method: "/bank.v1.Ledger/GetBalance"},
		},
		TTL:      5 * time.Minute,
		Reason:   "INC-1: x",
		Time:     time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC),
		UseLimit: 3,
	}
	tests := []struct {
		name string
		expr string
		err  string // "" when the condition must be true
	}{
		{name: "requester", expr: `requester == "spiffe://ex.org/person/alice"`},
		{name: "requester_path", expr: `requester_path == "/person/alice"`},
		{name: "ttl", expr: `ttl == duration("5m") && ttl < duration("1h")`},
		{name: "reason", expr: `reason.matches("^INC-[0-9]+:")`},
		{name: "time", expr: `time == timestamp("2025-01-06T10:30:00Z") && time.getHours("UTC") == 10 && time.getDayOfWeek("UTC") == 1`},
		{name: "time zone", expr: `time.getHours("Asia/Tokyo") == 19`},
		{name: "use_limit", expr: `use_limit == 3`},
		{name: "scopes size", expr: `size(scopes) == 2`},
		{name: "field", expr: `scopes[0].method == "/bank.v1.Ledger/Refund"`},
		{name: "index", expr: `scopes[0]["method"] == "/bank.v1.Ledger/Refund"`},
		{name: "resources", expr: `scopes[0].resources == ["accounts/1", "accounts/2"] && scopes[0].resources.all(r, r.startsWith("accounts/"))`},
		{name: "no resources", expr: `size(scopes[1].resources) == 0 && scopes[1].resources == []`},
		{name: "in", expr: `"method" in scopes[0] && !("other" in scopes[0])`},
		{name: "has", expr: `has(scopes[0].method) && !has(scopes[0].other)`},
		{name: "map size", expr: `size(scopes[0]) == 2`},
		{name: "map equality", expr: `scopes[1] == {"method": "/bank.v1.Ledger/GetBalance", "resources": []}`},
		{name: "map inequality", expr: `scopes[0] != scopes[1]`},
		{name: "map keys", expr: `scopes[0].all(k, k in ["method", "resources"])`},
		{name: "type", expr: `type(scopes[0]) == map`},
		{name: "list membership", expr: `{"method": "/bank.v1.Ledger/GetBalance", "resources": []} in scopes`},
		{name: "comprehension", expr: `scopes.exists(s, s.method.endsWith("/GetBalance")) && scopes.all(s, s.method.startsWith("/bank.v1."))`},
		{name: "missing key", expr: `scopes[0].other == "x"`, err: "no such key: other"},
		{name: "index out of range", expr: `scopes[2].method == "x"`, err: "index out of bounds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prg, err := compileCondition(env, tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := evalCondition(prg, &req)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("eval = %v, %v; want error %q", ok, err, tt.err)
				}
				return
			}
			if err != nil || !ok {
				t.Fatalf("eval = %v, %v; want true", ok, err)
			}
		})
	}
}

func TestScopeValNative(t *testing.T) {
	s := grant.Scope{Method: "/a.B/C"}
	v := &scopeVal{s: &s}
	if got := v.Get(types.String("method")); got != types.String("/a.B/C") {
		t.Errorf("Get(method) = %v", got)
	}
	if got := v.Get(types.String("other")); !types.IsError(got) {
		t.Errorf("Get(other) = %v, want an error", got)
	}
	native, err := v.ConvertToNative(reflect.TypeFor[map[string]any]())
	if err != nil {
		t.Fatal(err)
	}
	if m := native.(map[string]any); m["method"] != "/a.B/C" {
		t.Errorf("ConvertToNative = %v", m)
	}
	if v.Value() == nil || v.ConvertToType(types.MapType).Type() != types.MapType {
		t.Error("Value or ConvertToType")
	}
}
