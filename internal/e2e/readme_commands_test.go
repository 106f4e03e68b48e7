package e2e

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jitgrant/jitgrant/internal/jitctl"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/spf13/cobra"
)

// TestREADMECommandLines checks every jitctl and jitd command line in the
// README's code blocks, including those no test runs: the verbs exist and
// the flags parse, so that the README cannot name a flag that is gone.
func TestREADMECommandLines(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(sh|text)\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	roots := map[string]func() *cobra.Command{
		"jitctl": func() *cobra.Command { return jitctl.NewCommand(io.Discard, io.Discard) },
		"jitd":   func() *cobra.Command { return jitd.NewCommand(io.Discard, io.Discard) },
	}
	checked := 0
	for _, b := range blocks {
		for _, line := range joinContinuations(b[2]) {
			words := shellWords(line)
			for len(words) > 0 && (strings.Contains(words[0], "=") || words[0] == "ID=$(bin/jitctl") {
				words = words[1:] // VAR=value prefixes
			}
			if len(words) == 0 {
				continue
			}
			name := filepath.Base(words[0])
			newRoot, ok := roots[name]
			if !ok {
				continue
			}
			root := newRoot()
			cmd, rest, err := root.Find(words[1:])
			if err != nil || cmd == root {
				t.Errorf("README: %q: no such %s command (%v)", line, name, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("README: %q: %v", line, err)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("checked %d command lines in the README, expected at least 20", checked)
	}
}

// joinContinuations joins lines ending in a backslash and drops comments.
func joinContinuations(block string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(block, "\n") {
		if i := strings.Index(line, " #"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

// shellWords splits a command line into words, honouring single and double
// quotes, and stops at a pipe, ||, && or ).
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	quote := rune(0)
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '|' || r == '&' || r == ')':
			if inWord {
				words = append(words, w.String())
			}
			return words
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
