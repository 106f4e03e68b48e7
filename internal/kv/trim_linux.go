package kv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is Linux's MADV_PAGEOUT (5.4 and later): reclaim the pages of
// a range, keeping their contents (a file page is read back on the next
// access).
const madvPageout = 21

// Trim asks the kernel to reclaim the pages of the database's table files
// that this process has mapped, and returns how many bytes of mappings it
// advised. Badger writes every table it makes (flushes, compactions)
// through a memory map, so without this each table stays resident, as
// page cache counted in the process's RSS (and in its cgroup's memory), for
// as long as it lives: after 200,000 audit entries that is the whole 77 MB
// database. The contents are kept: a later read of a reclaimed page faults
// it back in from the file. The open memtables and value-log files are left
// alone (they are written all the time). The advice is only advice, so a
// mapping that Badger unmaps meanwhile, and a range then reused for other
// memory, come to no harm. On kernels without MADV_PAGEOUT it does nothing.
func (db *DB) Trim() (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("kv: trim: %w", err)
	}
	var advised int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || filepath.Dir(f[5]) != db.absDir || !strings.HasSuffix(f[5], ".sst") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout); errno == syscall.EINVAL {
			return advised, nil // no MADV_PAGEOUT on this kernel
		}
		advised += int64(end - start)
	}
	return advised, sc.Err()
}
