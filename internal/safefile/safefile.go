// Package safefile writes files that must never be half-written or
// overwritten: keys and certificates.
package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteNew creates path holding data with mode perm (whatever the umask),
// failing with an error wrapping fs.ErrExist if path exists. The data goes
// to a temporary file in the same directory, is synced, and is hard-linked
// into place, so path never holds a partial write; on a file system without
// hard links, path is created exclusively and removed again if the write
// fails.
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeSync(f, data, perm); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return writeExclusive(path, data, perm)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: some file systems refuse to sync a directory
		_ = d.Close()
	}
	return nil
}

func writeExclusive(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := writeSync(f, data, perm); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// writeSync sets f's mode, writes data, syncs and closes f.
func writeSync(f *os.File, data []byte, perm fs.FileMode) error {
	err := f.Chmod(perm)
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
