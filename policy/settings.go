package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ChecksumPrefix starts the optional checksum line of a policy file:
//
//	# jitgrant-sha256: <64 lowercase hex digits>
//
// The digits are the SHA-256 of the file without that line (see
// [Checksum]). A file with a checksum line parses only when the line
// matches, so a file caught half-written, or edited after its checksum was
// computed, is never put in force; [Watcher] applies a file whose checksum
// matches without waiting for it to settle, and only such a file may
// remove or change settings of the policy in force. Put the line first: a
// prefix of the file then carries it too and fails to match.
const ChecksumPrefix = "# jitgrant-sha256: "

// Checksum returns the hex SHA-256 that a checksum line of data must hold:
// the hash of data without its checksum lines (lines that start with
// [ChecksumPrefix]). With the line first it is what
//
//	grep -v '^# jitgrant-sha256: ' policy.yaml | sha256sum
//
// prints.
func Checksum(data []byte) string {
	sum := sha256.Sum256(withoutChecksum(data))
	return hex.EncodeToString(sum[:])
}

// WithChecksum returns data with its checksum lines removed and a fresh one
// put first.
func WithChecksum(data []byte) []byte {
	rest := withoutChecksum(data)
	sum := sha256.Sum256(rest)
	out := make([]byte, 0, len(ChecksumPrefix)+64+1+len(rest))
	out = append(out, ChecksumPrefix...)
	out = hex.AppendEncode(out, sum[:])
	out = append(out, '\n')
	return append(out, rest...)
}

// withoutChecksum returns data without the lines that start with
// ChecksumPrefix (each with its newline).
func withoutChecksum(data []byte) []byte {
	if !bytes.Contains(data, []byte(ChecksumPrefix)) {
		return data
	}
	var out []byte
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if !bytes.HasPrefix(line, []byte(ChecksumPrefix)) {
			out = append(out, line...)
		}
	}
	return out
}

// checksumState says whether data carries a checksum line and whether it
// matches. line is the 1-based line of the first checksum line; problem is
// "" when there is none or it matches.
func checksumState(data []byte) (present bool, line int, problem string) {
	n := 0
	var got []string
	for rest := data; len(rest) > 0; {
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l = rest[:i+1]
		}
		rest = rest[len(l):]
		n++
		if bytes.HasPrefix(l, []byte(ChecksumPrefix)) {
			if line == 0 {
				line = n
			}
			got = append(got, string(bytes.TrimRight(l[len(ChecksumPrefix):], " \t\r\n")))
		}
	}
	switch {
	case len(got) == 0:
		return false, 0, ""
	case len(got) > 1:
		return true, line, fmt.Sprintf("%d checksum lines; keep one", len(got))
	}
	want := Checksum(data)
	if got[0] != want {
		return true, line, fmt.Sprintf("checksum %q does not match the file (its SHA-256 without this line is %s): "+
			"the file is incomplete, or was edited after the checksum was written", got[0], want)
	}
	return true, line, ""
}

// checksumValid reports whether data has one checksum line and it matches.
func checksumValid(data []byte) bool {
	present, _, problem := checksumState(data)
	return present && problem == ""
}

// settingsOf lists the settings of a parsed policy file, one string per
// scalar that decides something ("path = value"), sorted. Descriptions and
// comments are left out. A list of strings (members, requesters, from, ...)
// counts as a set: "path[] = value" for each entry. Other lists (rules,
// scopes, approvals) are indexed, so that a rule moved or inserted before
// another changes settings, while a rule appended at the end only adds.
//
// A file cut short anywhere that still parses lacks a setting of the whole
// file, or holds a cut value in place of it: either way a setting of the
// whole file is gone, which [removedSettings] finds.
func settingsOf(top *yaml.Node) []string {
	var out []string
	var walk func(n *yaml.Node, path string, fields bool)
	walk = func(n *yaml.Node, path string, fields bool) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				if fields && k == "description" {
					continue
				}
				switch {
				case path == "" && k == "groups" && v.Kind == yaml.MappingNode:
					for j := 0; j+1 < len(v.Content); j += 2 {
						walk(v.Content[j+1], join("groups", strconv.Quote(v.Content[j].Value)), true)
					}
				case path == "" && k == "rules" && v.Kind == yaml.SequenceNode:
					for j, r := range v.Content {
						walk(r, index("rules", j), true)
					}
				default:
					walk(v, join(path, k), false)
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if c.Kind == yaml.ScalarNode {
					walk(c, path+"[]", false)
				} else {
					walk(c, index(path, i), false)
				}
			}
		case yaml.ScalarNode:
			if !isNull(n) {
				out = append(out, path+" = "+strconv.Quote(n.Value))
			}
		}
	}
	walk(top, "", false)
	slices.Sort(out)
	return slices.Compact(out)
}

// removedSettings returns the settings of old that next lacks: what a
// reload from old to next would remove or change. Both lists are sorted.
func removedSettings(old, next []string) []string {
	var gone []string
	j := 0
	for _, s := range old {
		for j < len(next) && next[j] < s {
			j++
		}
		if j < len(next) && next[j] == s {
			continue
		}
		gone = append(gone, s)
	}
	return gone
}
