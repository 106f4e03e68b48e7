package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// Errors that callers may branch on.
var (
	// ErrProcessGone means the caller exited before attestation completed.
	ErrProcessGone = errors.New("caller process is gone")
	// ErrPIDReused means the caller's PID now belongs to another process:
	// its start time changed since the caller connected.
	ErrPIDReused = errors.New("caller PID was reused by another process")
	// ErrNotUnix means a connection was not a Unix socket.
	ErrNotUnix = errors.New("not a Unix socket connection")
)

// Defaults of Config.
const (
	// DefaultProcRoot is where procfs is mounted.
	DefaultProcRoot = "/proc"
	// DefaultMaxExecutableSize bounds the size of an executable to hash.
	DefaultMaxExecutableSize = 512 << 20
	// DefaultHashTimeout bounds the time spent hashing one executable.
	DefaultHashTimeout = 30 * time.Second
	// DefaultNameTTL is how long a user or group name stays cached.
	DefaultNameTTL = time.Minute
)

// Config configures an Attestor. The zero value is ready to use.
type Config struct {
	// ProcRoot is where procfs is mounted. Default DefaultProcRoot. Tests
	// point it at a directory of fake processes.
	ProcRoot string
	// MaxExecutableSize bounds the size of an executable to hash; larger
	// ones fail attestation. Default DefaultMaxExecutableSize.
	MaxExecutableSize int64
	// HashTimeout bounds the time spent hashing one executable, by Clock.
	// Default DefaultHashTimeout.
	HashTimeout time.Duration
	// NameTTL is how long user and group names stay cached, by Clock.
	// Default DefaultNameTTL.
	NameTTL time.Duration
	// Clock is the time source. Default time.Now.
	Clock func() time.Time
	// Logger receives debug logs of attestations. Default slog.Default().
	Logger *slog.Logger
}

// Attestor finds the selectors of a caller identified by a PeerInfo. It is
// safe for concurrent use.
type Attestor struct {
	cfg    Config
	hashes *hashCache
	users  *nameCache
	groups *nameCache
}

// New returns an Attestor for cfg.
func New(cfg Config) (*Attestor, error) {
	switch {
	case cfg.MaxExecutableSize < 0:
		return nil, fmt.Errorf("attest: config: MaxExecutableSize %d is negative", cfg.MaxExecutableSize)
	case cfg.HashTimeout < 0:
		return nil, fmt.Errorf("attest: config: HashTimeout %s is negative", cfg.HashTimeout)
	case cfg.NameTTL < 0:
		return nil, fmt.Errorf("attest: config: NameTTL %s is negative", cfg.NameTTL)
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if cfg.MaxExecutableSize == 0 {
		cfg.MaxExecutableSize = DefaultMaxExecutableSize
	}
	if cfg.HashTimeout == 0 {
		cfg.HashTimeout = DefaultHashTimeout
	}
	if cfg.NameTTL == 0 {
		cfg.NameTTL = DefaultNameTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Attestor{
		cfg:    cfg,
		hashes: newHashCache(),
		users:  newNameCache(lookupUser, cfg.NameTTL),
		groups: newNameCache(lookupGroup, cfg.NameTTL),
	}, nil
}

// Attest returns the selectors of the caller identified by p: unix:uid and
// unix:gid from p; unix:user and unix:group when the IDs have names;
// unix:path and unix:sha256 of the executable the process runs, read
// through /proc/<pid>/exe. It checks the process start time against
// p.StartTime before and after reading, so that it fails with ErrPIDReused
// if the PID now belongs to another process, or ErrProcessGone if the caller
// exited, rather than describe the wrong process.
func (a *Attestor) Attest(ctx context.Context, p PeerInfo) (Selectors, error) {
	if p.UID < 0 || p.GID < 0 {
		return nil, fmt.Errorf("attest: pid %d: invalid uid %d or gid %d", p.PID, p.UID, p.GID)
	}
	d, err := openProcDir(a.cfg.ProcRoot, p.PID)
	if err != nil {
		return nil, err
	}
	defer d.close()
	if err := d.checkStartTime(p.StartTime); err != nil {
		return nil, err
	}
	path, err := d.exePath()
	if err != nil {
		return nil, err
	}
	sum, err := a.hashExe(ctx, d)
	if err != nil {
		return nil, err
	}
	uid, gid := strconv.Itoa(p.UID), strconv.Itoa(p.GID)
	sels := NewSelectors(
		Selector{TypeUID, uid},
		Selector{TypeGID, gid},
		Selector{TypePath, path},
		Selector{TypeSHA256, sum},
	)
	for _, n := range []struct {
		cache *nameCache
		id    string
		typ   string
	}{{a.users, uid, TypeUser}, {a.groups, gid, TypeGroup}} {
		name, ok, err := n.cache.lookup(n.id, a.cfg.Clock())
		if err != nil {
			return nil, fmt.Errorf("attest: pid %d: looking up the name of %s %s: %w", p.PID, n.typ, n.id, err)
		}
		if ok {
			sels.Add(Selector{n.typ, name})
		}
	}
	// The PID-reuse guard: everything above describes the caller only if
	// the caller still holds its PID now.
	if err := d.checkStartTime(p.StartTime); err != nil {
		return nil, err
	}
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "attest: caller attested",
		slog.Int("pid", p.PID), slog.String("selectors", sels.String()))
	return sels, nil
}

// Alive checks that the process attested as p still runs and holds its
// PID. A server calls it after preparing a response and before sending it,
// as SPIRE does, so that a caller that exited meanwhile, and whose PID
// another process may have taken, gets nothing. It returns ErrProcessGone
// or ErrPIDReused when the caller is gone.
func (a *Attestor) Alive(p PeerInfo) error {
	d, err := openProcDir(a.cfg.ProcRoot, p.PID)
	if err != nil {
		return err
	}
	defer d.close()
	return d.checkStartTime(p.StartTime)
}

// hashExe returns the hex SHA-256 of the executable that d's process runs,
// from the cache when the file is unchanged since it was hashed.
func (a *Attestor) hashExe(ctx context.Context, d *procDir) (string, error) {
	f, key, err := d.openExe()
	if err != nil {
		return "", err
	}
	defer f.Close()
	if sum, ok := a.hashes.get(key); ok {
		return sum, nil
	}
	if key.size > a.cfg.MaxExecutableSize {
		return "", fmt.Errorf("attest: pid %d: executable %s: size %d exceeds the limit of %d bytes", d.pid, f.Name(), key.size, a.cfg.MaxExecutableSize)
	}
	start := a.cfg.Clock()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("attest: pid %d: hashing executable %s: %w", d.pid, f.Name(), err)
		}
		if a.cfg.Clock().Sub(start) > a.cfg.HashTimeout {
			return "", fmt.Errorf("attest: pid %d: hashing executable %s: took longer than %s", d.pid, f.Name(), a.cfg.HashTimeout)
		}
		m, err := f.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if n > key.size {
			return "", fmt.Errorf("attest: pid %d: hashing executable %s: it grew while being read", d.pid, f.Name())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("attest: pid %d: hashing executable %s: %w", d.pid, f.Name(), err)
		}
	}
	if after, err := statKey(int(f.Fd())); err != nil || after != key || n != key.size {
		return "", fmt.Errorf("attest: pid %d: hashing executable %s: it changed while being read", d.pid, f.Name())
	}
	sum := hex.EncodeToString(h.Sum(nil))
	now := a.cfg.Clock()
	cached := a.hashes.put(key, sum, now)
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "attest: hashed executable",
		slog.Int("pid", d.pid), slog.String("file", f.Name()), slog.Int64("size", n),
		slog.Duration("elapsed", now.Sub(start)), slog.Bool("cached", cached))
	return sum, nil
}
