package jwtsvid

import (
	"fmt"
	"os"

	"github.com/jitgrant/jitgrant/internal/safefile"
)

// LoadSignerFile is [LoadSigner] with the PEM read from path.
func LoadSignerFile(cfg Config, path string) (*Signer, error) {
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwtsvid: reading signing key: %w", err)
	}
	s, err := LoadSigner(cfg, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return s, nil
}

// WriteKeyFile writes [Signer.MarshalKey]'s output to path with mode 0600.
// It never overwrites: if path exists it writes nothing and returns an error
// wrapping [fs.ErrExist]. The file appears complete or not at all (written
// to a temporary file in the same directory, synced, then hard-linked into
// place).
func (s *Signer) WriteKeyFile(path string) error {
	keyPEM, err := s.MarshalKey()
	if err != nil {
		return err
	}
	if err := safefile.WriteNew(path, keyPEM, 0o600); err != nil {
		return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
	}
	return nil
}
