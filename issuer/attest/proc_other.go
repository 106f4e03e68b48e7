//go:build !linux

package attest

import (
	"errors"
	"os"
)

// errUnsupported is why attestation fails where it is not built: it reads
// the caller's credentials with SO_PEERCRED and its process from /proc,
// both Linux's.
var errUnsupported = errors.New("attest: Workload API attestation needs Linux (SO_PEERCRED and /proc)")

// procDir stands in for Linux's handle on /proc/<pid>; nothing opens one.
type procDir struct{ pid int }

func openProcDir(string, int) (*procDir, error)      { return nil, errUnsupported }
func (*procDir) close()                              {}
func (*procDir) startTime() (uint64, error)          { return 0, errUnsupported }
func (*procDir) checkStartTime(uint64) error         { return errUnsupported }
func (*procDir) exePath() (string, error)            { return "", errUnsupported }
func (*procDir) openExe() (*os.File, fileKey, error) { return nil, fileKey{}, errUnsupported }
func statKey(int) (fileKey, error)                   { return fileKey{}, errUnsupported }
