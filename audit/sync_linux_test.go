//go:build linux

package audit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/jitgrant/jitgrant/internal/kv"
	"golang.org/x/sys/unix"
)

// TestAppendIsSynced checks that an acknowledged Append has reached stable
// storage, which TestCrashRecovery cannot see: a SIGKILLed process leaves its
// writes in the kernel's page cache, and the next process reads them back
// whether they were synced or not.
//
// Faking a crash that loses the page cache (dm-flakey, a FUSE file system,
// a VM) is out of reach of a unit test, and Badger does its own file I/O
// (its write-ahead log is a memory-mapped file flushed with msync), so no
// file layer can be slipped underneath it. What the kernel does tell is
// whether a file still has dirty pages: cachestat(2) (Linux 6.5) counts the
// dirty and under-writeback pages of a file's page cache, mapped pages
// included. After fsync or msync(MS_SYNC) returns, the file has none. So
// after every acknowledged Append, every file of the database must have no
// dirty page; an unsynced commit leaves the page holding the new entry
// dirty until the kernel's flusher writes it back (30 s later by default).
//
// The second case is the control that shows the check can fail here: with
// kv.Config.AsyncWrites (Badger's SyncWrites off) the same appends leave
// dirty pages behind. Were the control to see none (a file system that
// hides them), the check would prove nothing, and the test fails rather
// than pass blind.
func TestAppendIsSynced(t *testing.T) {
	const appends = 50
	probe := t.TempDir()
	if _, err := dirtyPages(probe); errors.Is(err, unix.ENOSYS) {
		t.Skip("cachestat(2) needs Linux 6.5 or later; without it a missing sync cannot be seen")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is on a memory file system: its pages are never clean, sync or not", probe)
	}
	tests := []struct {
		name      string
		async     bool
		wantDirty bool
	}{
		{"synced writes (the default) leave no dirty page", false, false},
		{"control: AsyncWrites leaves dirty pages", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, dir, kv.Config{AsyncWrites: tt.async})
			signer, _ := testKeys(t, "example.org/audit", 1)
			// No checkpoints: the writer would sign and commit one after
			// answering an append, while the files are being looked at.
			l, err := New(db.DB, Config{Signer: signer, Origin: testOrigin, Actor: testActor,
				Now: newFakeClock().Now, CheckpointEvery: -1, CheckpointInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			sawDirty := 0
			for i := range appends {
				mustAppend(t, l, record(i))
				dirty, err := dirtyPages(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(dirty) > 0 {
					sawDirty++
					if !tt.wantDirty {
						t.Fatalf("after append %d was acknowledged, files still have dirty pages (not synced): %v", i, dirty)
					}
				}
			}
			if tt.wantDirty && sawDirty == 0 {
				t.Fatalf("the control saw no dirty page after %d unsynced appends: this file system hides them, so the check above proves nothing", appends)
			}
		})
	}
}

// notData are the files of a Badger directory that hold no committed data,
// and that Badger writes at open without syncing: the lock file (its pid)
// and the value-log GC statistics (a hint, rebuilt when lost).
var notData = map[string]bool{"LOCK": true, "DISCARD": true}

// dirtyPages returns, for each regular file under dir that holds data and
// has any, the number of its cached pages that are dirty or under
// writeback.
func dirtyPages(dir string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || notData[d.Name()] {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := cachestatDirty(int(f.Fd()))
		if err != nil {
			return err
		}
		if n > 0 {
			out[filepath.Base(path)] = n
		}
		return nil
	})
	return out, err
}

// cachestatDirty calls cachestat(2) over the whole file (x/sys has the
// syscall number but no wrapper).
func cachestatDirty(fd int) (uint64, error) {
	var rng struct{ off, len uint64 } // struct cachestat_range; len 0: to the end
	var cs struct {
		cache, dirty, writeback, evicted, recentlyEvicted uint64 // struct cachestat
	}
	_, _, errno := unix.Syscall6(unix.SYS_CACHESTAT, uintptr(fd), uintptr(unsafe.Pointer(&rng)), uintptr(unsafe.Pointer(&cs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return cs.dirty + cs.writeback, nil
}
