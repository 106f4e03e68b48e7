package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := GenerateKey("example.org/jitgrant-audit")
	if err != nil {
		t.Fatal(err)
	}
	if pub, err := PublicKey(skey); err != nil || pub != vkey {
		t.Fatalf("PublicKey = %q, %v; want %q", pub, err, vkey)
	}
	priv := filepath.Join(dir, "audit.key")
	if err := WritePrivateKey(priv, skey); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := WritePrivateKey(priv, skey); err == nil {
		t.Error("WritePrivateKey overwrote an existing file")
	}
	signer, err := ReadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pub, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	verifier, err := ReadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := signCheckpoint(signer, testOrigin, 3, emptyRoot, time.Unix(1e9, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(cp.Note, verifier)
	if err != nil || got.Size != 3 || got.Origin != testOrigin || !got.Time.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("OpenCheckpoint = %v, %v", got, err)
	}

	t.Run("refuses an open private key file", func(t *testing.T) {
		if err := os.Chmod(priv, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSigner(priv); err == nil || !strings.Contains(err.Error(), "too open") {
			t.Errorf("ReadSigner on a 0644 file: %v", err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		tests := []struct {
			name string
			fn   func() error
		}{
			{"name with space", func() error { _, _, err := GenerateKey("a b"); return err }},
			{"private key as public", func() error { _, err := ParseVerifier(skey); return err }},
			{"garbage public key", func() error { _, err := ParseVerifier("x+y+z"); return err }},
			{"garbage private key", func() error { return WritePrivateKey(filepath.Join(dir, "x"), "nope") }},
			{"public key as private", func() error { _, err := PublicKey(vkey); return err }},
		}
		for _, tt := range tests {
			if err := tt.fn(); err == nil || !strings.HasPrefix(err.Error(), "audit: ") {
				t.Errorf("%s: %v", tt.name, err)
			} else if strings.Contains(err.Error(), skey) {
				t.Errorf("%s: the error leaks the private key", tt.name)
			}
		}
	})
}

func TestOpenCheckpointRejects(t *testing.T) {
	signer, verifier := testKeys(t, "example.org/audit", 1)
	sign := func(text string) []byte {
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	root := emptyRoot.String()
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"unsigned", []byte(testOrigin + "\n1\n" + root + "\n2026-01-01T00:00:00Z\n"), nil},
		{"three lines", sign(testOrigin + "\n1\n" + root + "\n"), errMalformedCheckpoint},
		{"five lines", sign(testOrigin + "\n1\n" + root + "\n2026-01-01T00:00:00Z\nextra\n"), errMalformedCheckpoint},
		{"size with plus", sign(testOrigin + "\n+1\n" + root + "\n2026-01-01T00:00:00Z\n"), errMalformedCheckpoint},
		{"bad root", sign(testOrigin + "\n1\nAAAA\n2026-01-01T00:00:00Z\n"), errMalformedCheckpoint},
		{"local time", sign(testOrigin + "\n1\n" + root + "\n2026-01-01T01:00:00+01:00\n"), errMalformedCheckpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenCheckpoint(tt.msg, verifier)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("OpenCheckpoint: %v, want %v", err, tt.want)
			}
		})
	}
}
