package issuer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jitgrant/jitgrant/audit"
)

// Store keeps requests. Every write carries its audit record: the request and
// the entry commit together or not at all. A store for several issuer
// replicas (PostgreSQL) would implement the same interface.
type Store interface {
	// Get returns the request with this ID, or an error matching ErrNotFound.
	Get(ctx context.Context, id string) (*Request, error)
	// List returns up to q.Limit requests matching q, newest first, and the
	// ID to pass as q.Before for the next page ("" on the last page).
	List(ctx context.Context, q Query) ([]*Request, string, error)
	// Put replaces prev (nil for a new request) with next, together with
	// recs, at least one audit record per Put: each records one transition
	// from prev to next (a request created and issued at once takes two),
	// and they become consecutive entries, in order. next.Version must be
	// prev's plus len(recs) (len(recs) for a new request). If the stored
	// request is not at prev's version (or exists when prev is nil),
	// nothing is written and the error matches ErrConflict.
	Put(ctx context.Context, prev, next *Request, recs ...audit.Record) error
	// Audit records rec alone.
	Audit(ctx context.Context, rec audit.Record) error
	// Due returns up to limit live requests whose next deadline (review
	// deadline, scheduled start or grant end; see Request.Due) is at or
	// before t, earliest first.
	Due(ctx context.Context, t time.Time, limit int) ([]*Request, error)
	// Revoked returns the revoked grants that end after t, by their end
	// (earliest first), without reading the requests of revocations that
	// ended before t: what an issuer loads at start.
	Revoked(ctx context.Context, t time.Time) ([]Revocation, error)
}

// Query selects requests for Store.List.
type Query struct {
	// States, when not empty, keeps requests in one of these states.
	States []State
	// Requester, when set, keeps the requests of this SPIFFE ID.
	Requester string
	// NeedsReview, when set, keeps break-glass grants whose after-the-fact
	// review is outstanding (Request.NeedsReview).
	NeedsReview bool
	// Match, when set, keeps the requests it returns true for.
	Match func(*Request) bool
	// Before, when set, starts after this request ID (for paging).
	Before string
	// Limit is the page size; at least 1.
	Limit int
}

func (q *Query) keep(r *Request) bool {
	if len(q.States) > 0 && !slices.Contains(q.States, r.State) {
		return false
	}
	if q.Requester != "" && r.Requester != q.Requester {
		return false
	}
	if q.NeedsReview && !r.NeedsReview {
		return false
	}
	return q.Match == nil || q.Match(r)
}

// Keys of the Badger store, under the "i/" prefix (the audit log has "a/"):
//
//	i/r/<id>                    -> the request as JSON
//	i/v/<id>                    -> its version, 8 bytes big-endian
//	i/s/<state>/<id>            -> "" (state index)
//	i/u/<requester> 0x00 <id>   -> "" (requester index)
//	i/d/<due> <id>              -> "" (deadline index; due as 8 bytes of
//	                               big-endian Unix nanoseconds)
//	i/n/<id>                    -> "" (break-glass grants that need review)
//	i/x/<end> <id>              -> "" (revoked grants by the end of the
//	                               grant; end as due above)
//	i/m/revoked-index           -> "1" once i/x/ covers every revoked
//	                               request (stores made before it existed
//	                               are indexed on first use)
//
// Request IDs sort by creation time, so every index lists oldest first.
func recordKey(id string) []byte  { return []byte("i/r/" + id) }
func versionKey(id string) []byte { return []byte("i/v/" + id) }
func stateKey(s State, id string) []byte {
	return []byte("i/s/" + string(s) + "/" + id)
}
func requesterKey(requester, id string) []byte {
	return []byte("i/u/" + requester + "\x00" + id)
}
func needsReviewKey(id string) []byte { return []byte("i/n/" + id) }
func dueKey(t time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64([]byte("i/d/"), uint64(t.UnixNano()))
	return append(k, id...)
}
func revokedKey(end time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64([]byte("i/x/"), uint64(end.UnixNano()))
	return append(k, id...)
}

var revokedIndexDone = []byte("i/m/revoked-index")

// BadgerStore is the embedded Store: requests in the Badger database the
// audit log lives in, written through the log's single writer so that each
// state change and its entry share one synced commit.
type BadgerStore struct {
	db  *badger.DB
	log *audit.Log
}

// NewBadgerStore returns a store over db, writing through log (which must
// use db too).
func NewBadgerStore(db *badger.DB, log *audit.Log) *BadgerStore {
	return &BadgerStore{db: db, log: log}
}

// Get implements Store.
func (s *BadgerStore) Get(_ context.Context, id string) (*Request, error) {
	var r *Request
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(recordKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: request %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) (err error) {
			r, err = decodeRequest(v)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: store: %w", err)
	}
	return r, nil
}

// List implements Store.
func (s *BadgerStore) List(_ context.Context, q Query) ([]*Request, string, error) {
	if q.Limit < 1 {
		q.Limit = 1
	}
	prefixes := listPrefixes(q)
	var out []*Request
	next := ""
	err := s.db.View(func(txn *badger.Txn) error {
		ids := newIDMerge(txn, prefixes, q.Before)
		defer ids.close()
		for id, ok := ids.next(); ok; id, ok = ids.next() {
			item, err := txn.Get(recordKey(id))
			if err != nil {
				return fmt.Errorf("index names request %q: %w", id, err)
			}
			var r *Request
			if err := item.Value(func(v []byte) (err error) { r, err = decodeRequest(v); return err }); err != nil {
				return err
			}
			if !q.keep(r) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("issuer: store: list: %w", err)
	}
	return out, next, nil
}

// listPrefixes returns the index prefixes whose keys end in the IDs of the
// requests q may select, choosing the most selective index: flagged
// break-glass grants have their own, a live state
// holds few requests, a requester's history grows without bound, and every
// request is under the record prefix. Several states are walked together
// (see idMerge), so that listing the live requests (at start, for instance)
// never reads the ended ones.
func listPrefixes(q Query) [][]byte {
	if q.NeedsReview {
		return [][]byte{[]byte("i/n/")}
	}
	live := len(q.States) > 0
	for _, st := range q.States {
		live = live && !st.Final()
	}
	switch {
	case len(q.States) > 0 && (live || q.Requester == ""):
		out := make([][]byte, 0, len(q.States))
		for _, st := range q.States {
			if p := []byte("i/s/" + string(st) + "/"); !slices.ContainsFunc(out, func(o []byte) bool { return bytes.Equal(o, p) }) {
				out = append(out, p)
			}
		}
		return out
	case q.Requester != "":
		return [][]byte{[]byte("i/u/" + q.Requester + "\x00")}
	default:
		return [][]byte{[]byte("i/r/")}
	}
}

// idMerge walks the IDs under several index prefixes together, newest
// (largest) first, starting after before when it is set. A request is under
// at most one of the prefixes (a state index, a requester's index or the
// records), so no ID comes twice.
type idMerge struct {
	its      []*badger.Iterator
	prefixes [][]byte
}

func newIDMerge(txn *badger.Txn, prefixes [][]byte, before string) *idMerge {
	m := &idMerge{prefixes: prefixes}
	for _, p := range prefixes {
		opts := badger.DefaultIteratorOptions
		opts.Reverse, opts.Prefix, opts.PrefetchValues = true, p, false
		it := txn.NewIterator(opts)
		seek := append(bytes.Clone(p), 0xff)
		if before != "" {
			seek = append(bytes.Clone(p), before...)
		}
		it.Seek(seek)
		if it.Valid() && before != "" && string(it.Item().Key()[len(p):]) == before {
			it.Next()
		}
		m.its = append(m.its, it)
	}
	return m
}

// next returns the largest ID not yet returned.
func (m *idMerge) next() (string, bool) {
	best := -1
	var bestID []byte
	for i, it := range m.its {
		if !it.Valid() {
			continue
		}
		id := it.Item().Key()[len(m.prefixes[i]):]
		if best < 0 || bytes.Compare(id, bestID) > 0 {
			best, bestID = i, id
		}
	}
	if best < 0 {
		return "", false
	}
	id := string(bestID)
	m.its[best].Next()
	return id, true
}

func (m *idMerge) close() {
	for _, it := range m.its {
		it.Close()
	}
}

// Put implements Store. The writer checks the version key, not the decoded
// record, so that a change costs the single writer no JSON decoding.
func (s *BadgerStore) Put(ctx context.Context, prev, next *Request, recs ...audit.Record) error {
	from := uint64(0)
	if prev != nil {
		from = prev.Version
	}
	switch {
	case len(recs) == 0:
		return fmt.Errorf("issuer: store: request %s: no audit record", next.ID)
	case next.Version != from+uint64(len(recs)) || (prev != nil && prev.ID != next.ID):
		return fmt.Errorf("issuer: store: request %s: version %d does not follow %d by %d records", next.ID, next.Version, from, len(recs))
	}
	val, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("issuer: store: encoding request %s: %w", next.ID, err)
	}
	id := next.ID
	_, err = s.log.AppendAll(ctx, recs, func(tx audit.Tx) error {
		stored := uint64(0)
		switch v, err := tx.Get(versionKey(id)); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		case len(v) != 8:
			return fmt.Errorf("request %s: corrupt version key", id)
		default:
			stored = binary.BigEndian.Uint64(v)
		}
		if stored != from {
			return fmt.Errorf("%w: request %s is at version %d, write was for %d", ErrConflict, id, stored, from)
		}
		return writeIndexes(tx, prev, next, val)
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return err
		}
		return fmt.Errorf("issuer: store: writing request %s: %w", id, err)
	}
	return nil
}

// writeIndexes writes next and moves its index keys from where prev had them.
func writeIndexes(tx audit.Tx, prev, next *Request, val []byte) error {
	id := next.ID
	var prevDue time.Time
	prevLive := false
	if prev != nil {
		prevDue, prevLive = prev.Due()
		if prev.State != next.State {
			if err := tx.Delete(stateKey(prev.State, id)); err != nil {
				return err
			}
		}
	}
	due, live := next.Due()
	if prevLive && (!live || !due.Equal(prevDue)) {
		if err := tx.Delete(dueKey(prevDue, id)); err != nil {
			return err
		}
	}
	if live && (!prevLive || !due.Equal(prevDue)) {
		if err := tx.Set(dueKey(due, id), nil); err != nil {
			return err
		}
	}
	if prev == nil || prev.State != next.State {
		if err := tx.Set(stateKey(next.State, id), nil); err != nil {
			return err
		}
		if next.State == StateRevoked {
			if err := tx.Set(revokedKey(next.grantEnd(), id), nil); err != nil {
				return err
			}
		}
	}
	if prev == nil {
		if err := tx.Set(requesterKey(next.Requester, id), nil); err != nil {
			return err
		}
	}
	if flagged := prev != nil && prev.NeedsReview; flagged != next.NeedsReview {
		var err error
		if next.NeedsReview {
			err = tx.Set(needsReviewKey(id), nil)
		} else {
			err = tx.Delete(needsReviewKey(id))
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Set(versionKey(id), binary.BigEndian.AppendUint64(nil, next.Version)); err != nil {
		return err
	}
	return tx.Set(recordKey(id), val)
}

// Due implements Store.
func (s *BadgerStore) Due(_ context.Context, t time.Time, limit int) ([]*Request, error) {
	var out []*Request
	end := dueKey(t, "\xff")
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte("i/d/"), false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			key := it.Item().Key()
			if bytes.Compare(key, end) > 0 {
				break
			}
			id := string(key[len("i/d/")+8:])
			item, err := txn.Get(recordKey(id))
			if err != nil {
				return fmt.Errorf("deadline index names request %q: %w", id, err)
			}
			var r *Request
			if err := item.Value(func(v []byte) (err error) { r, err = decodeRequest(v); return err }); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: store: due: %w", err)
	}
	return out, nil
}

// Revoked implements Store. It walks the revocation index from t on; a
// store written before the index existed is indexed first (once: every
// revoked request is read then).
func (s *BadgerStore) Revoked(_ context.Context, t time.Time) ([]Revocation, error) {
	if err := s.indexRevoked(); err != nil {
		return nil, fmt.Errorf("issuer: store: indexing revocations: %w", err)
	}
	var out []Revocation
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte("i/x/"), false
		it := txn.NewIterator(opts)
		defer it.Close()
		// Grants ending exactly at t have ended (see revocations.follow).
		for it.Seek(revokedKey(t.Add(1), "")); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) <= len("i/x/")+8 {
				return fmt.Errorf("malformed revocation index key %q", key)
			}
			end := int64(binary.BigEndian.Uint64(key[len("i/x/"):]))
			out = append(out, Revocation{GrantID: string(key[len("i/x/")+8:]), NotAfter: time.Unix(0, end).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: store: revoked: %w", err)
	}
	return out, nil
}

// indexRevoked fills the revocation index from the state index, unless it
// is marked complete. Writes made meanwhile index themselves, and a second
// run writes the same keys, so it needs no lock against them.
func (s *BadgerStore) indexRevoked() error {
	done := false
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(revokedIndexDone)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		done = err == nil
		return err
	})
	if err != nil || done {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	prefix := []byte("i/s/" + string(StateRevoked) + "/")
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = prefix, false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			item, err := txn.Get(recordKey(id))
			if err != nil {
				return fmt.Errorf("state index names request %q: %w", id, err)
			}
			var r *Request
			if err := item.Value(func(v []byte) (err error) { r, err = decodeRequest(v); return err }); err != nil {
				return err
			}
			if err := wb.Set(revokedKey(r.grantEnd(), id), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := wb.Set(revokedIndexDone, []byte("1")); err != nil {
		return err
	}
	return wb.Flush()
}

// Audit implements Store.
func (s *BadgerStore) Audit(ctx context.Context, rec audit.Record) error {
	if _, err := s.log.Append(ctx, rec, nil); err != nil {
		return fmt.Errorf("issuer: store: %w", err)
	}
	return nil
}

func decodeRequest(v []byte) (*Request, error) {
	r := new(Request)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decoding request: %w", err)
	}
	return r, nil
}
