package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		perm    fs.FileMode
		wantErr error
	}{
		{"key", filepath.Join(dir, "k"), 0o600, nil},
		{"cert", filepath.Join(dir, "c"), 0o644, nil},
		{"exists", filepath.Join(dir, "k"), 0o600, fs.ErrExist},
		{"no directory", filepath.Join(dir, "none", "k"), 0o600, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteNew(tt.path, []byte(tt.name), tt.perm)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("WriteNew: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(tt.path)
			if err != nil || fi.Mode().Perm() != tt.perm {
				t.Fatalf("mode %v (%v), want %v", fi.Mode().Perm(), err, tt.perm)
			}
			if b, _ := os.ReadFile(tt.path); string(b) != tt.name {
				t.Errorf("content %q", b)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "k")); string(b) != "key" {
		t.Errorf("an existing file was overwritten: %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
