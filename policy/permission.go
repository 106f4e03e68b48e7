package policy

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// Permission is an issuer API permission granted by the permissions section
// of the file. Approving is not one: who may approve a request comes from
// its rule's approval factors.
type Permission string

// Permissions, spelled as the keys of the permissions section.
const (
	// ListAll allows listing every request and grant, not only one's own.
	ListAll Permission = "list_all"
	// RevokeAny allows revoking grants held by others.
	RevokeAny Permission = "revoke_any"
	// ExportAudit allows exporting the audit log.
	ExportAudit Permission = "export_audit"
	// WatchRevocations allows streaming revocations (protected services).
	WatchRevocations Permission = "watch_revocations"
)

// Allowed reports whether id holds perm. It denies by default: an unknown
// permission, a permission the file does not list, a zero ID and a nil
// policy are all false.
func (p *Policy) Allowed(perm Permission, id spiffeid.ID) bool {
	if p == nil || id.IsZero() {
		return false
	}
	ps, ok := p.perms[perm]
	return ok && ps.match(id) >= 0
}
