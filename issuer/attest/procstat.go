package attest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// fileKey identifies the contents of a file for the hash cache: a write to
// the file changes its ctime, which no system call can set back.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the Unix epoch
}

// parseStartTime returns field 22 (starttime) of a /proc/<pid>/stat line.
// Field 2, the command name in parentheses, may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' closing the command name")
	}
	fields := bytes.Fields(stat[i+1:])
	const idx = 22 - 3 // fields[0] is field 3, the state
	if len(fields) <= idx {
		return 0, fmt.Errorf("%d fields after the command name, want at least %d", len(fields), idx+1)
	}
	st, err := strconv.ParseUint(string(fields[idx]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("start time: %w", err)
	}
	return st, nil
}
