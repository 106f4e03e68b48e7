package attest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxStatSize bounds a read of /proc/<pid>/stat, which is well under 1 KiB.
const maxStatSize = 4096

// procDir is an open handle on /proc/<pid>. Files opened through it belong
// to the process that had the PID when the handle was opened: once that
// process is gone they fail (ENOENT or ESRCH) even if the PID is reused.
type procDir struct {
	fd   int
	pid  int
	path string
}

// openProcDir opens root/<pid>. A missing directory means ErrProcessGone.
func openProcDir(root string, pid int) (*procDir, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("attest: invalid pid %d", pid)
	}
	p := filepath.Join(root, strconv.Itoa(pid))
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, procError(pid, "opening "+p, err)
	}
	return &procDir{fd: fd, pid: pid, path: p}, nil
}

// close releases the handle.
func (d *procDir) close() { unix.Close(d.fd) }

// open opens the file name in the directory for reading.
func (d *procDir) open(name string) (*os.File, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	})
	if err != nil {
		return nil, procError(d.pid, "opening "+filepath.Join(d.path, name), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// startTime returns the process start time, field 22 of stat: clock ticks
// since boot.
func (d *procDir) startTime() (uint64, error) {
	f, err := d.open("stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatSize+1))
	if err != nil {
		return 0, procError(d.pid, "reading "+f.Name(), err)
	}
	if len(b) > maxStatSize {
		return 0, fmt.Errorf("attest: pid %d: reading %s: longer than %d bytes", d.pid, f.Name(), maxStatSize)
	}
	st, err := parseStartTime(b)
	if err != nil {
		return 0, fmt.Errorf("attest: pid %d: parsing %s: %w", d.pid, f.Name(), err)
	}
	return st, nil
}

// checkStartTime returns ErrPIDReused if the process start time is not want.
func (d *procDir) checkStartTime(want uint64) error {
	got, err := d.startTime()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("attest: pid %d: start time is %d, was %d when the caller connected: %w", d.pid, got, want, ErrPIDReused)
	}
	return nil
}

// exePath returns the target of the exe link: the path of the executable
// the process runs.
func (d *procDir) exePath() (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(d.fd, "exe", buf)
		if err != nil {
			return "", procError(d.pid, "reading executable path "+filepath.Join(d.path, "exe"), err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= unix.PathMax*4 {
			return "", fmt.Errorf("attest: pid %d: reading executable path %s: longer than %d bytes", d.pid, filepath.Join(d.path, "exe"), len(buf))
		}
		buf = make([]byte, len(buf)*4)
	}
}

// openExe opens the process's executable through the exe link, so that the
// bytes read are those of the image the process runs even if its path now
// names another file. It checks that it is a regular file.
func (d *procDir) openExe() (*os.File, fileKey, error) {
	name := filepath.Join(d.path, "exe")
	fd, err := retryEINTR(func() (int, error) {
		// O_NONBLOCK so that a FIFO cannot block the open; it does
		// nothing to a regular file.
		return unix.Openat(d.fd, "exe", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	})
	if err != nil {
		return nil, fileKey{}, procError(d.pid, "opening executable "+name, err)
	}
	key, err := statKey(fd)
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fileKey{}, fmt.Errorf("attest: pid %d: executable %s: %w", d.pid, name, err)
	}
	return os.NewFile(uintptr(fd), name), key, nil
}

// statKey returns the fileKey of the file open as fd, which must be a
// regular file.
func statKey(fd int) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileKey{}, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileKey{}, fmt.Errorf("not a regular file (mode %#o)", st.Mode)
	}
	return fileKey{
		dev:   st.Dev,
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}, nil
}

// procError wraps err, from doing what for process pid, in ErrProcessGone
// when it means the process is gone: ENOENT and ESRCH under /proc.
func procError(pid int, what string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("attest: pid %d: %s: %w (%w)", pid, what, ErrProcessGone, err)
	}
	return fmt.Errorf("attest: pid %d: %s: %w", pid, what, err)
}

// retryEINTR calls f until it fails with an error other than EINTR.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
