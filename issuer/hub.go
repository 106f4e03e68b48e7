package issuer

import "sync"

// watcherBuffer is how many changes a watcher may lag behind before it is
// dropped.
const watcherBuffer = 256

// hub fans committed request changes out to watchers.
type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch chan *Request
}

func newHub() *hub { return &hub{subs: make(map[*subscriber]struct{})} }

func (h *hub) subscribe() *subscriber {
	s := &subscriber{ch: make(chan *Request, watcherBuffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
	h.mu.Unlock()
}

// publish hands r to every watcher without blocking; a watcher whose buffer
// is full is dropped (its channel closed) and must reconnect.
func (h *hub) publish(r *Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- r:
		default:
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// count returns the number of watchers.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
