//go:build !linux

package kv

import "os"

// freeBytes is not measured outside Linux: the reserve is never short.
func freeBytes(string) (int64, error) { return 1 << 62, nil }

// allocate is not available outside Linux.
func allocate(string, int64) error { return errNoFallocate }

// walSpace outside Linux assumes the whole file is data and allocated.
func walSpace(path string) (dataEnd, allocated int64, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	return info.Size(), info.Size(), nil
}

// changeTime is not used outside Linux (nothing is allocated there).
func changeTime(os.FileInfo) int64 { return 0 }

// allocatedBytes is not used outside Linux (nothing is allocated there).
func allocatedBytes(os.FileInfo) int64 { return 0 }
