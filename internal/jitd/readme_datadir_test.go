package jitd

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEDataDirectory checks what the README says about the data
// directory against what jitd init writes: the files it lists exist, every
// file init writes is listed, and no serve configuration example is named
// like the data directory's own jitd.yaml.
func TestREADMEDataDirectory(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	d := DataDir(filepath.Join(t.TempDir(), "data"))
	if err := Init(InitConfig{Dir: d, TrustDomain: "example.org"}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(string(d))
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, e := range ents {
		made = append(made, e.Name())
	}

	// The configuration reference's data_dir row.
	row := regexp.MustCompile("(?m)^\\| `data_dir` .*$").FindString(readme)
	if row == "" {
		t.Fatal("README: no data_dir row in the configuration reference")
	}
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z_]+\\.[a-z]+)`").FindAllStringSubmatch(row, -1) {
		listed = append(listed, m[1])
	}
	for _, f := range listed {
		if !slices.Contains(made, f) {
			t.Errorf("README's data_dir row lists %s, which jitd init does not write (it writes %v)", f, made)
		}
	}
	for _, f := range made {
		if !slices.Contains(listed, f) {
			t.Errorf("jitd init writes %s, which README's data_dir row does not list (%v)", f, listed)
		}
		if !strings.Contains(readme, "`"+f+"`") {
			t.Errorf("README never names %s", f)
		}
	}

	for _, m := range regexp.MustCompile(`serve --config (\S+)`).FindAllStringSubmatch(readme, -1) {
		if filepath.Base(m[1]) == fileMeta {
			t.Errorf("README names a serve configuration %s, like the data directory's own file, which --config refuses", m[1])
		}
	}
}
