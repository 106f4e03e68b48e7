// Package connlimit bounds what one server lets its callers hold: accepted
// connections per listener ([Listener]) and concurrent streams per caller
// identity ([Streams]). Both count what they refuse in a [Collector] and log
// once per episode, not once per refusal, so that a flood does not also
// flood the log.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// ListenerConfig configures a [Listener].
type ListenerConfig struct {
	// Name labels the listener in logs and metrics ("api", "workload",
	// "metrics"). Required.
	Name string
	// Max is the most connections open at once. Required, positive.
	Max int
	// Logger logs when the cap is reached and when it is left. Default
	// slog.Default().
	Logger *slog.Logger
	// Collector, when set, counts connections and waits at the cap.
	Collector *Collector
}

// Listener is a net.Listener that holds at most Max accepted connections
// open. At the cap, Accept waits until one closes: further connections wait
// in the kernel's listen backlog, holding no descriptor of the process. The
// first wait of an episode is logged (and every wait counted); the end of
// the episode is logged too.
//
// Connections it returns implement syscall.Conn when the accepted one does
// (peer credentials on a Unix socket still work). Closing one twice frees
// one slot.
type Listener struct {
	net.Listener
	cfg  ListenerConfig
	sem  chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	full bool // the cap was reached and has not been left since
}

// NewListener wraps l.
func NewListener(l net.Listener, cfg ListenerConfig) (*Listener, error) {
	if l == nil {
		return nil, errors.New("connlimit: no listener")
	}
	if cfg.Name == "" {
		return nil, errors.New("connlimit: listener: no name")
	}
	if cfg.Max <= 0 {
		return nil, errors.New("connlimit: listener " + cfg.Name + ": the connection cap must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Collector.limit(cfg.Name, cfg.Max)
	return &Listener{Listener: l, cfg: cfg, sem: make(chan struct{}, cfg.Max), done: make(chan struct{})}, nil
}

// Accept waits for a free slot, then for a connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	default:
		l.atCap()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	l.cfg.Collector.opened(l.cfg.Name)
	return &conn{Conn: c, l: l}, nil
}

// Close closes the listener and ends a waiting Accept.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// atCap counts a wait at the cap and logs the first of an episode.
func (l *Listener) atCap() {
	l.cfg.Collector.capReached(l.cfg.Name)
	l.mu.Lock()
	first := !l.full
	l.full = true
	l.mu.Unlock()
	if first {
		l.cfg.Logger.Warn("connlimit: connection cap reached; new connections wait until one closes",
			"listener", l.cfg.Name, "max", l.cfg.Max, "addr", l.Addr().String())
	}
}

// release frees a slot; the first release after an episode at the cap
// logs its end.
func (l *Listener) release() {
	<-l.sem
	l.cfg.Collector.closed(l.cfg.Name)
	l.mu.Lock()
	was := l.full
	l.full = false
	l.mu.Unlock()
	if was {
		l.cfg.Logger.Info("connlimit: below the connection cap again", "listener", l.cfg.Name, "max", l.cfg.Max)
	}
}

// conn frees its slot when closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}

// SyscallConn returns the accepted connection's, so that peer credentials
// can be read through the wrapper.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connlimit: the connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// NetConn returns the accepted connection.
func (c *conn) NetConn() net.Conn { return c.Conn }
