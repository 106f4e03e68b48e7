package access

import (
	"strings"
	"testing"
)

// TestParseScopes checks the scope syntax, method@resource like jitctl.
func TestParseScopes(t *testing.T) {
	got, err := ParseScopes([]string{"/bank.v1.Ledger/Refund@accounts/1", "/bank.v1.Ledger/Refund@accounts/2", "/bank.v1.Ledger/GetBalance", "/bank.v1.Ledger/Refund@accounts/1"})
	if err != nil || len(got) != 2 || len(got[0].Resources) != 2 || got[1].Method != "/bank.v1.Ledger/GetBalance" || len(got[1].Resources) != 0 {
		t.Fatalf("ParseScopes: %v, %v", got, err)
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"Refund"}, `scope "Refund"`},
		{[]string{"/bank.v1.Ledger/Refund@"}, `scope "/bank.v1.Ledger/Refund@"`},
		{[]string{"/bank.v1.Ledger/Refund", "/bank.v1.Ledger/Refund@accounts/1"}, "both with and without resources"},
	} {
		if _, err := ParseScopes(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseScopes(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
