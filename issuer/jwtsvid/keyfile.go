package jwtsvid

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, fs.ErrExist)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeSync(f, keyPEM); err != nil {
		return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
		}
		// No hard links on this file system: create path exclusively and
		// remove it again if the write fails.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
		}
		if err := writeSync(f, keyPEM); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("jwtsvid: writing signing key %s: %w", path, err)
		}
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: some file systems refuse to sync a directory
		_ = d.Close()
	}
	return nil
}

// writeSync sets f's mode to 0600 (whatever the umask), writes data, syncs
// and closes f.
func writeSync(f *os.File, data []byte) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
