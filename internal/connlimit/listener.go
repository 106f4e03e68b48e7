// Package connlimit bounds what one server lets its callers hold: accepted
// connections per listener ([Listener]) and concurrent streams per caller
// identity ([Streams]). Both count what they refuse in a [Collector] and log
// once per episode, not once per refusal, so that a flood does not also
// flood the log.
package connlimit

import (
	"container/list"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
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
	// EvictHandshaking, when set, makes room at the cap by closing the
	// oldest connection still in its handshake, instead of waiting for one
	// to close. A gRPC server ends a connection's handshake by clearing its
	// deadline (SetDeadline with the zero time), which is how the listener
	// tells: use it only for gRPC servers. Under a flood of handshakes that
	// never finish, a new caller then gets in at once rather than after
	// the handshake timeout.
	EvictHandshaking bool
}

// Listener is a net.Listener that holds at most Max accepted connections
// open. At the cap, Accept closes the oldest connection still in its
// handshake (with EvictHandshaking), or else waits until one closes:
// further connections wait in the kernel's listen backlog, holding no
// descriptor of the process. The first time the cap is hit in an episode is
// logged (and every time counted); the end of the episode is logged too.
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
	// handshaking are the connections whose handshake has not ended,
	// oldest first (only with EvictHandshaking).
	handshaking list.List
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
		if l.cfg.EvictHandshaking {
			l.evictOldest()
		}
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
	wc := &conn{Conn: c, l: l}
	if l.cfg.EvictHandshaking {
		l.mu.Lock()
		wc.elem = l.handshaking.PushBack(wc)
		l.mu.Unlock()
	}
	return wc, nil
}

// evictOldest closes the oldest connection still in its handshake, if
// any, which frees its slot.
func (l *Listener) evictOldest() {
	l.mu.Lock()
	e := l.handshaking.Front()
	var c *conn
	if e != nil {
		c = e.Value.(*conn)
		l.handshaking.Remove(e)
		c.elem = nil
	}
	l.mu.Unlock()
	if c != nil {
		l.cfg.Collector.evicted(l.cfg.Name)
		c.Close()
	}
}

// established takes c off the handshaking list.
func (l *Listener) established(c *conn) {
	l.mu.Lock()
	if c.elem != nil {
		l.handshaking.Remove(c.elem)
		c.elem = nil
	}
	l.mu.Unlock()
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
		what := "new connections wait until one closes"
		if l.cfg.EvictHandshaking {
			what = "closing the oldest connections still in their handshake to make room"
		}
		l.cfg.Logger.Warn("connlimit: connection cap reached; "+what,
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
	elem *list.Element // on l.handshaking; guarded by l.mu
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.established(c) // off the handshaking list
		c.l.release()
	})
	return err
}

// SetDeadline sets the connection's deadline; clearing it ends the
// handshake (see ListenerConfig.EvictHandshaking).
func (c *conn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		c.l.established(c)
	}
	return c.Conn.SetDeadline(t)
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
