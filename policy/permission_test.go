package policy

import (
	"os"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAllowed(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString
	tests := []struct {
		name string
		perm Permission
		id   spiffeid.ID
		want bool
	}{
		{name: "list_all via group sre", perm: ListAll, id: id("spiffe://example.org/person/oncall-bob"), want: true},
		{name: "list_all via group security", perm: ListAll, id: id("spiffe://example.org/person/sec/ann"), want: true},
		{name: "list_all denied", perm: ListAll, id: id("spiffe://example.org/person/bob"), want: false},
		{name: "revoke_any security", perm: RevokeAny, id: id("spiffe://example.org/person/sec/ann"), want: true},
		{name: "revoke_any not sre", perm: RevokeAny, id: id("spiffe://example.org/person/alice"), want: false},
		{name: "export_audit by pattern", perm: ExportAudit, id: id("spiffe://example.org/auditor/x"), want: true},
		{name: "export_audit other domain", perm: ExportAudit, id: id("spiffe://other.org/auditor/x"), want: false},
		{name: "watch_revocations", perm: WatchRevocations, id: id("spiffe://example.org/service/ledger"), want: true},
		{name: "unknown permission", perm: Permission("approve_all"), id: id("spiffe://example.org/person/alice"), want: false},
		{name: "zero id", perm: ListAll, id: spiffeid.ID{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Allowed(tt.perm, tt.id); got != tt.want {
				t.Errorf("Allowed(%s, %s) = %v, want %v", tt.perm, tt.id, got, tt.want)
			}
		})
	}
	unlisted := mustParse(t, edit(nil))
	if unlisted.Allowed(ListAll, id("spiffe://ex.org/person/alice")) {
		t.Error("a permission the file does not list was allowed")
	}
	var none *Policy
	if none.Allowed(ListAll, id("spiffe://example.org/person/alice")) {
		t.Error("nil policy allowed")
	}
}
