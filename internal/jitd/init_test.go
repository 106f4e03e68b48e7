package jitd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInitLeavesNothingOnFailure runs jitd init into paths where it fails
// at different points: it says what is wrong and leaves nothing behind.
func TestInitLeavesNothingOnFailure(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares root and returns the data directory and extra
		// arguments.
		setup   func(t *testing.T, root string) (dir string, args []string)
		wantErr string
		// wantLeft lists what dir holds afterwards; nil: dir must not exist.
		wantLeft []string
		// gone must not exist afterwards.
		gone string
	}{
		{
			name: "empty passphrase file",
			setup: func(t *testing.T, root string) (string, []string) {
				pass := filepath.Join(root, "pass")
				writeTestFile(t, pass, "\n", 0o600)
				return filepath.Join(root, "data"), []string{"--ca-passphrase-file", pass}
			},
			wantErr: "passphrase file " + "ROOT/pass is empty: write the passphrase in it, or leave out --ca-passphrase-file",
		},
		{
			name: "bad CA TTL, in directories init would make",
			setup: func(t *testing.T, root string) (string, []string) {
				return filepath.Join(root, "a", "b", "data"), []string{"--ca-ttl", "-1h"}
			},
			wantErr: "TTL -1h0m0s is negative",
			gone:    "a",
		},
		{
			name: "a write fails late, in a directory that was there",
			setup: func(t *testing.T, root string) (string, []string) {
				dir := filepath.Join(root, "data")
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				// audit.pub points nowhere: writing it fails after the CA
				// and audit keys are written.
				if err := os.Symlink(filepath.Join(root, "nowhere", "audit.pub"), filepath.Join(dir, fileAuditPub)); err != nil {
					t.Fatal(err)
				}
				return dir, nil
			},
			wantErr:  "audit.pub",
			wantLeft: []string{fileAuditPub},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir, args := tt.setup(t, root)
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"init", "--data-dir", dir, "--trust-domain", "example.org"}, args...), &stdout, &stderr)
			want := strings.ReplaceAll(tt.wantErr, "ROOT", root)
			if code != 1 || !strings.Contains(stderr.String(), want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
			}
			if strings.Contains(stderr.String(), "pass nil") {
				t.Errorf("stderr speaks to Go programmers: %q", stderr.String())
			}
			var left []string
			ents, err := os.ReadDir(dir)
			switch {
			case os.IsNotExist(err) && tt.wantLeft == nil:
			case err != nil:
				t.Fatalf("ReadDir: %v", err)
			default:
				for _, e := range ents {
					left = append(left, e.Name())
				}
				if tt.wantLeft == nil || !slices.Equal(left, tt.wantLeft) {
					t.Errorf("%s holds %v after a failed init, want %v", dir, left, tt.wantLeft)
				}
			}
			if tt.gone != "" {
				if _, err := os.Stat(filepath.Join(root, tt.gone)); !os.IsNotExist(err) {
					t.Errorf("%s is left behind (%v)", tt.gone, err)
				}
			}
		})
	}
}

// TestInitPassphraseFileMode: a passphrase file others may read works, with
// a warning; a 0600 one without.
func TestInitPassphraseFileMode(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o600, false}} {
		root := t.TempDir()
		pass := filepath.Join(root, "pass")
		writeTestFile(t, pass, "correct horse\n", tt.mode)
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"init", "--data-dir", filepath.Join(root, "data"), "--trust-domain", "example.org",
			"--ca-passphrase-file", pass}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("mode %04o: exit %d: %s", tt.mode, code, stderr.String())
		}
		want := "jitd: warning: passphrase file " + pass + " has mode 0644: others on this machine may read it; chmod 600 " + pass + "\n"
		if got := stderr.String(); (got == want) != tt.warn || (!tt.warn && got != "") {
			t.Errorf("mode %04o: stderr %q", tt.mode, got)
		}
	}
}

// TestConfigFileMixUps: the data directory's jitd.yaml given to --config,
// and a serve configuration saved over it, each say what happened.
func TestConfigFileMixUps(t *testing.T) {
	root := t.TempDir()
	d := DataDir(filepath.Join(root, "data"))
	if err := Init(InitConfig{Dir: d, TrustDomain: "example.org"}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--config", d.path(fileMeta), "--listen", "127.0.0.1:0", "--metrics-listen", ""}, &stdout, &stderr)
	want := "jitd: --config " + d.path(fileMeta) + " is a data directory's own jitd.yaml (jitd init wrote it"
	if code != 1 || !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("serve --config <data>/jitd.yaml: exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}

	writeTestFile(t, d.path(fileMeta), "data_dir: "+string(d)+"\nlisten: 127.0.0.1:0\n", 0o644)
	_, _, err := d.readMeta()
	want = "jitd: " + d.path(fileMeta) + " holds a serve configuration (data_dir, listen, ...), not the data directory's own file that jitd init wrote"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a serve configuration over jitd.yaml: %v; want %q", err, want)
	}
}

func writeTestFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
