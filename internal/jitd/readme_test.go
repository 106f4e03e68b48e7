package jitd

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestREADMEConfigBlocks decodes, as strictly as jitd serve --config does,
// every block of the README that shows jitd's configuration file, so that
// the README cannot show a key jitd refuses.
func TestREADMEConfigBlocks(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		body := b[1]
		if !strings.Contains(body, "webhooks:") && !strings.Contains(body, "workload_socket:") && !strings.Contains(body, "limits:") && !strings.Contains(body, "ticket_checkers:") {
			continue // a policy file
		}
		n++
		dec := yaml.NewDecoder(bytes.NewReader([]byte(body)))
		dec.KnownFields(true)
		var fc fileConfig
		if err := dec.Decode(&fc); err != nil {
			t.Errorf("README config block does not decode: %v\n%s", err, body)
		}
	}
	if n < 3 {
		t.Errorf("found %d jitd config blocks in the README, want the Workload API, webhook and limits ones", n)
	}
}
