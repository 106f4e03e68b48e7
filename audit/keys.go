package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jitgrant/jitgrant/internal/safefile"

	"golang.org/x/mod/sumdb/note"
)

// The audit key is an Ed25519 key in the encodings of
// golang.org/x/mod/sumdb/note: the private ("signer") key is the text
// "PRIVATE+KEY+<name>+<hash>+<base64>" and the public ("verifier") key is
// "<name>+<hash>+<base64>". The name appears on every signature line; it
// must not contain spaces or '+', for example "example.org/jitgrant-audit".

// GenerateKey returns a new audit key pair named name: the private signer key
// (keep it secret; see WritePrivateKey) and the public verifier key (give it
// to auditors).
func GenerateKey(name string) (skey, vkey string, err error) {
	if name == "" || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsSpace) >= 0 || strings.Contains(name, "+") {
		return "", "", fmt.Errorf("audit: generate key: name %q must be non-empty without spaces or '+'", name)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("audit: generate key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// PublicKey returns the verifier key that matches the signer key skey.
func PublicKey(skey string) (string, error) {
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("audit: parse private key: %w", err)
	}
	// Validated above: PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>.
	parts := strings.SplitN(skey, "+", 5)
	key, _ := base64.StdEncoding.DecodeString(parts[4])
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", fmt.Errorf("audit: derive public key: %w", err)
	}
	return vkey, nil
}

// WritePrivateKey writes skey to a new file at path with mode 0600. It
// refuses to overwrite an existing file.
func WritePrivateKey(path, skey string) error {
	if _, err := note.NewSigner(skey); err != nil {
		return fmt.Errorf("audit: write private key %s: %w", path, err)
	}
	if err := safefile.WriteNew(path, []byte(skey+"\n"), 0o600); err != nil {
		return fmt.Errorf("audit: write private key: %w", err)
	}
	return nil
}

// ReadSigner reads a private key written by WritePrivateKey. It refuses a
// file that group or others can read or write.
func ReadSigner(path string) (note.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("audit: read private key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit: read private key %s: mode %v is too open, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: read private key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("audit: read private key %s: %w", path, err)
	}
	return s, nil
}

// ParseVerifier parses a public verifier key ("<name>+<hash>+<base64>").
func ParseVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		if strings.HasPrefix(vkey, "PRIVATE+KEY+") {
			err = errors.New("this is a private key; give the public key")
		}
		return nil, fmt.Errorf("audit: parse public key: %w", err)
	}
	return v, nil
}

// ReadVerifier reads a public verifier key from a file.
func ReadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: read public key: %w", err)
	}
	v, err := ParseVerifier(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return v, nil
}
