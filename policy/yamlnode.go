package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a file: where, which key, and what.
type Problem struct {
	// Line and Column locate the offending node (1-based; 0 when unknown).
	Line, Column int
	// Path names the key, e.g. "rules[0].approvals[1].count"; empty for
	// the file as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
}

// String formats p as "line N: path: msg".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// FileError lists every problem found in a policy or cases file. It wraps
// [ErrInvalid].
type FileError struct {
	// File names the file ("" when parsed from bytes without a name).
	File string
	// Problems are sorted by line.
	Problems []Problem
}

// Error returns one line per problem, each "policy: FILE: line N: path: msg".
func (e *FileError) Error() string {
	prefix := "policy: "
	if e.File != "" {
		prefix += e.File + ": "
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = prefix + p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns [ErrInvalid].
func (e *FileError) Unwrap() error { return ErrInvalid }

// checker walks a YAML node tree and collects problems.
type checker struct {
	problems []Problem
}

func (c *checker) addf(n *yaml.Node, path, format string, args ...any) {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	c.problems = append(c.problems, p)
}

// err returns the collected problems as a *FileError, or nil.
func (c *checker) err(file string) error {
	if len(c.problems) == 0 {
		return nil
	}
	ps := slices.Clone(c.problems)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return &FileError{File: file, Problems: ps}
}

// decodeDocument parses data as exactly one YAML document and returns its
// root node, or nil after recording why not. Aliases are refused: they make
// the line of a value ambiguous and invite exponential expansion.
func (c *checker) decodeDocument(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.addf(nil, "", "empty file")
		} else {
			c.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		c.addf(&yaml.Node{Line: line}, "", "more than one YAML document")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		c.addf(&doc, "", "empty file")
		return nil
	}
	ok := true
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			c.addf(n, "", "YAML anchors and aliases are not supported")
			ok = false
			return
		}
		for _, k := range n.Content {
			walk(k)
		}
	}
	walk(doc.Content[0])
	if !ok {
		return nil
	}
	return doc.Content[0]
}

// syntaxError records a YAML parse error, moving its "line N: " into the
// problem's Line.
func (c *checker) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	c.addf(&yaml.Node{Line: line}, "", "%s", msg)
}

// mapping checks that n is a mapping whose keys are all in known and
// unique, and returns its values by key. It returns nil if n is not a
// mapping.
func (c *checker) mapping(n *yaml.Node, path string, known ...string) map[string]*yaml.Node {
	kvs := c.entries(n, path)
	if kvs == nil && n.Kind != yaml.MappingNode {
		return nil
	}
	m := make(map[string]*yaml.Node, len(kvs))
	for _, kv := range kvs {
		if !slices.Contains(known, kv[0].Value) {
			c.addf(kv[0], join(path, kv[0].Value), "unknown key (want one of: %s)", strings.Join(known, ", "))
			continue
		}
		m[kv[0].Value] = kv[1]
	}
	return m
}

// entries returns the key and value nodes of mapping n in file order,
// reporting non-string and duplicate keys.
func (c *checker) entries(n *yaml.Node, path string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		c.addf(n, path, "must be a mapping, not %s", describeNode(n))
		return nil
	}
	var out [][2]*yaml.Node
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			c.addf(k, path, "keys must be strings, not %s", describeNode(k))
			continue
		}
		if seen[k.Value] {
			c.addf(k, join(path, k.Value), "duplicate key")
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

func (c *checker) seq(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		c.addf(n, path, "must be a list, not %s", describeNode(n))
		return nil
	}
	return n.Content
}

func (c *checker) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		c.addf(n, path, "must be a string, not %s", describeNode(n))
		return "", false
	}
	return n.Value, true
}

// strList returns the strings of sequence n with their nodes.
func (c *checker) strList(n *yaml.Node, path string) ([]string, []*yaml.Node) {
	var vals []string
	var nodes []*yaml.Node
	for i, e := range c.seq(n, path) {
		if s, ok := c.str(e, index(path, i)); ok {
			vals = append(vals, s)
			nodes = append(nodes, e)
		}
	}
	return vals, nodes
}

func (c *checker) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		c.addf(n, path, "must be true or false, not %s", describeNode(n))
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	c.addf(n, path, "must be true or false, not %q", n.Value)
	return false, false
}

func (c *checker) integer(n *yaml.Node, path string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		c.addf(n, path, "must be an integer, not %s", describeNode(n))
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil {
		c.addf(n, path, "must be an integer that fits in 64 bits, not %q", n.Value)
		return 0, false
	}
	return v, true
}

// duration parses a Go duration such as "15m" or "1h30m".
func (c *checker) duration(n *yaml.Node, path string) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		c.addf(n, path, "must be a duration such as 15m or 1h, not %s", describeNode(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		c.addf(n, path, "must be a duration such as 15m or 1h, not %q", n.Value)
		return 0, false
	}
	return d, true
}

// uint32Value parses a non-negative integer that fits in 32 bits.
func (c *checker) uint32Value(n *yaml.Node, path string) (uint32, bool) {
	v, ok := c.integer(n, path)
	if !ok {
		return 0, false
	}
	if v < 0 || v > math.MaxUint32 {
		c.addf(n, path, "must be between 0 and %d, not %d", uint32(math.MaxUint32), v)
		return 0, false
	}
	return uint32(v), true
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null (no value)"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return fmt.Sprintf("%s %q", n.Tag, n.Value)
	}
	return "an unsupported node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
