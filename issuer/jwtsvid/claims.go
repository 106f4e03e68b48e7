package jwtsvid

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/jitgrant/jitgrant/grant"
)

// readGrant reads the jitgrant claims of a verified payload: nil when it has
// none, an error when they are incomplete, malformed or not a valid grant.
// A token that carries grant claims nobody can read is refused rather than
// taken for an identity token.
func readGrant(raw map[string]any) (*grant.Grant, error) {
	idv, hasID := raw[ClaimGrantID]
	scv, hasScopes := raw[ClaimScopes]
	ulv, hasLimit := raw[ClaimUseLimit]
	switch {
	case !hasID && !hasScopes && !hasLimit:
		return nil, nil
	case !hasID:
		return nil, fmt.Errorf("jwtsvid: token: grant claims without %s", ClaimGrantID)
	case !hasScopes:
		return nil, fmt.Errorf("jwtsvid: token: grant claims without %s", ClaimScopes)
	}
	id, ok := idv.(string)
	if !ok {
		return nil, fmt.Errorf("jwtsvid: token: %s is not a string", ClaimGrantID)
	}
	g := &grant.Grant{ID: id}
	if hasLimit {
		f, ok := ulv.(float64)
		if !ok || f < 0 || f > math.MaxUint32 || f != math.Trunc(f) {
			return nil, fmt.Errorf("jwtsvid: token: %s is not an integer from 0 to %d", ClaimUseLimit, uint32(math.MaxUint32))
		}
		g.UseLimit = uint32(f)
	}
	scopes, ok := scv.([]any)
	if !ok {
		return nil, fmt.Errorf("jwtsvid: token: %s is not an array", ClaimScopes)
	}
	if len(scopes) > grant.MaxScopes {
		return nil, fmt.Errorf("jwtsvid: token: %s: %d scopes, more than %d", ClaimScopes, len(scopes), grant.MaxScopes)
	}
	g.Scopes = make([]grant.Scope, len(scopes))
	for i, v := range scopes {
		s, err := readScope(v)
		if err != nil {
			return nil, fmt.Errorf("jwtsvid: token: %s: scope %d: %w", ClaimScopes, i, err)
		}
		g.Scopes[i] = s
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("jwtsvid: token: grant claims: %w", err)
	}
	return g, nil
}

// readScope reads one element of the jitgrant_scopes claim: an object with
// a "method" string and an optional "resources" array of strings, nothing
// else.
func readScope(v any) (grant.Scope, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return grant.Scope{}, errors.New("not an object")
	}
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if name != "method" && name != "resources" {
			return grant.Scope{}, fmt.Errorf("unknown member %q", truncate(name))
		}
	}
	var s grant.Scope
	if s.Method, ok = obj["method"].(string); !ok {
		return grant.Scope{}, errors.New("method missing or not a string")
	}
	rv, ok := obj["resources"]
	if !ok {
		return s, nil
	}
	rs, ok := rv.([]any)
	if !ok {
		return grant.Scope{}, errors.New("resources is not an array")
	}
	if len(rs) > grant.MaxResources {
		return grant.Scope{}, fmt.Errorf("%d resource patterns, more than %d", len(rs), grant.MaxResources)
	}
	if len(rs) > 0 {
		s.Resources = make([]string, len(rs))
	}
	for i, r := range rs {
		if s.Resources[i], ok = r.(string); !ok {
			return grant.Scope{}, fmt.Errorf("resource %d is not a string", i)
		}
	}
	return s, nil
}
