//go:build linux

package kv

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBytes returns the space in dir's file system that an unprivileged
// writer may still use (f_bavail): the conservative figure, since blocks
// reserved for root are not counted.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// allocate makes every block of the first size bytes of path allocated,
// without changing its length (fallocate(2) with FALLOC_FL_KEEP_SIZE). A
// page Badger then writes, or reads, through its memory map needs no new
// block, so a full file system can no longer turn that access into SIGBUS.
// A file system without fallocate yields errNoFallocate.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		return errNoFallocate
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return errNoSpace
	}
	return err
}

// walSpace returns where the data of the write-ahead log at path ends (past
// its last non-zero byte: Badger zeroes the header after the last entry,
// and the rest of the file was never written) and how many bytes of it are
// allocated. It reads with read(2), which, unlike a memory map, does not
// allocate holes on tmpfs.
func walSpace(path string) (dataEnd, allocated int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 1<<20)
	for end := st.Size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && n < int(end-start) {
			return 0, 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return start + int64(i) + 1, st.Blocks * 512, nil
			}
		}
		end = start
	}
	return 0, st.Blocks * 512, nil
}

// changeTime returns the inode change time of info, in nanoseconds.
func changeTime(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}

// allocatedBytes returns how much of the file info describes has disk
// blocks.
func allocatedBytes(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return 0
}
