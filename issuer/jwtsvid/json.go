package jwtsvid

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// maxDepth bounds the nesting of arrays and objects in a token's JSON.
const maxDepth = 32

// decodeSegment decodes one base64url segment of a compact JWS (canonical,
// unpadded) holding a JSON object, returning the bytes and the object.
func decodeSegment(seg, name string) ([]byte, map[string]any, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, nil, fmt.Errorf("jwtsvid: token: %s is not canonical unpadded base64url: %v", name, err)
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("jwtsvid: token: %s: %w", name, err)
	}
	return raw, obj, nil
}

// decodeObject decodes data, which must be exactly one JSON object, as
// [json.Unmarshal] decodes into a map[string]any (values string, float64,
// bool, nil, []any, map[string]any; member names matched exactly, never
// case-insensitively as json.Unmarshal matches struct fields).
//
// Unlike json.Unmarshal, it refuses an object that repeats a member name
// (RFC 7519 section 4 lets a parser refuse or take the last; one that takes
// the first would read another token) and nesting deeper than maxDepth.
// json.Unmarshal keeps the last of repeated names, so the decoded maps hold
// fewer names than the text has members (name-value separators) exactly
// when some object repeats one.
func decodeObject(data []byte) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field == "" {
			return nil, errors.New("not a JSON object")
		}
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	members, depth := scanJSON(data)
	if depth > maxDepth {
		return nil, fmt.Errorf("JSON nested more than %d deep", maxDepth)
	}
	if names := countNames(obj); names != members {
		return nil, fmt.Errorf("JSON object repeats a member name (%d members, %d distinct names)", members, names)
	}
	return obj, nil
}

// scanJSON returns the number of object members in data, valid JSON, and
// its deepest nesting of objects and arrays.
func scanJSON(data []byte) (members, depth int) {
	var inString, escaped bool
	d := 0
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ':':
			members++
		case '{', '[':
			d++
			depth = max(depth, d)
		case '}', ']':
			d--
		}
	}
	return members, depth
}

// countNames returns the number of member names in v and everything in it.
func countNames(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n = len(v)
		for _, e := range v {
			n += countNames(e)
		}
	case []any:
		for _, e := range v {
			n += countNames(e)
		}
	}
	return n
}
