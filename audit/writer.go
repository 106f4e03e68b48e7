package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Group commit. One goroutine (run) owns the head of the log. It takes every
// append waiting in the queue (up to Config.MaxGroup), runs their change
// functions in order in one Badger transaction, gives consecutive sequence
// numbers to the records of those whose change succeeded (an append may
// carry several records: AppendAll), writes their entries and tree hashes,
// and commits once, synced. Then it answers every caller. See
// commitPrefix for failures.

// pending is one Append (or AppendAll) waiting for the writer: its records
// become consecutive entries, committed with change or not at all.
type pending struct {
	ctx    context.Context
	recs   []Record
	change func(Tx) error
	extra  [][2][]byte // raw writes of the log's own entries (checkpoints)
	state  atomic.Int32
	res    chan result
	start  time.Time
}

const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

type result struct {
	entries []Entry // one per record of the append
	err     error
}

// writerState is the head of the log as the writer knows it. Only the writer
// goroutine touches it (and load, before the writer starts).
type writerState struct {
	head      Hash        // hash of the last entry
	last      time.Time   // time of the last entry
	fr        fringe      // Merkle tree fringe over all entries
	uppers    []upperHash // tree hashes for the cache, from the group being staged
	sinceCP   int         // entries other than checkpoints since the latest checkpoint
	cpTime    time.Time   // time of the latest checkpoint (or of opening)
	lastGroup int         // appends taken in the latest group (see gather)
	closeErr  error
}

// maxConflictRetries bounds how often a group is retried after Badger
// reports a conflict with a concurrent transaction of the caller's.
const maxConflictRetries = 10

func (l *Log) run() {
	defer close(l.done)
	for {
		select {
		case p := <-l.queue:
			l.gather()
			l.commitGroup(l.drain(p))
			l.maybeCheckpoint()
		case <-l.tick:
			l.maybeCheckpoint()
		case f := <-l.ctl:
			f()
		case <-l.quit:
			l.drainQueue()
			if l.failed.Load() == nil {
				if _, err := l.signNow(); err != nil {
					l.w.closeErr = fmt.Errorf("audit: close: final checkpoint: %w", err)
				}
			} else {
				l.w.closeErr = l.failedErr()
			}
			return
		}
	}
}

// gather waits Config.CommitDelay for more appends to queue, when it is set
// and the previous group held more than one, or until Close.
func (l *Log) gather() {
	if l.cfg.CommitDelay <= 0 || l.w.lastGroup < 2 {
		return
	}
	if f := l.hookGather.Load(); f != nil {
		(*f)()
	}
	t := time.NewTimer(l.cfg.CommitDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.quit:
	}
}

// drainQueue commits everything still queued.
func (l *Log) drainQueue() {
	for {
		select {
		case p := <-l.queue:
			l.commitGroup(l.drain(p))
		default:
			return
		}
	}
}

// drain collects p and every append already queued behind it.
func (l *Log) drain(p *pending) []*pending {
	group := []*pending{p}
	for len(group) < l.cfg.MaxGroup {
		select {
		case q := <-l.queue:
			group = append(group, q)
		default:
			return group
		}
	}
	return group
}

func (l *Log) failedErr() error {
	if e := l.failed.Load(); e != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *e)
	}
	return nil
}

// commitGroup commits the appends of one group that are still wanted.
func (l *Log) commitGroup(group []*pending) {
	live := group[:0]
	for _, p := range group {
		switch {
		case !p.state.CompareAndSwap(stateQueued, stateTaken):
			// The caller gave up (its context ended) before we got here.
		case p.ctx != nil && p.ctx.Err() != nil:
			p.res <- result{err: fmt.Errorf("audit: append: %w", p.ctx.Err())}
		default:
			live = append(live, p)
		}
	}
	l.w.lastGroup = len(live)
	for len(live) > 0 {
		n := l.commitPrefix(live)
		live = live[n:]
	}
}

// commitPrefix commits the longest prefix of ms that fits in one
// transaction and returns its length, after answering those appends.
//
//   - A change function that fails (or panics) drops its own append: it gets
//     its error, takes no sequence number, and the rest of the group commits.
//   - If the transaction grows too large (ErrTxnTooBig), it is discarded and
//     the members before the one that overflowed are committed alone; the
//     rest go in the next transaction. A single append too large on its own
//     fails with ErrTooLarge.
//   - A Badger conflict (a change read a key that another transaction wrote
//     meanwhile) retries the whole prefix, re-running the change functions.
//   - Any other commit failure fails every append of the prefix (fail
//     closed) and marks the log failed: the head in memory is not advanced,
//     and since the on-disk state after a failed sync is uncertain, later
//     appends fail with ErrFailed until the log is reopened.
func (l *Log) commitPrefix(ms []*pending) int {
	if err := l.failedErr(); err != nil {
		for _, p := range ms {
			p.res <- result{err: err}
		}
		return len(ms)
	}
	if err := l.checkWrite(); err != nil {
		l.failGroup(ms, make([]result, len(ms)), err)
		return len(ms)
	}
	for attempt := 1; ; attempt++ {
		txn := l.db.NewTransaction(true)
		st, results, fit, err := l.stageGroup(txn, ms)
		if errors.Is(err, badger.ErrTxnTooBig) {
			txn.Discard()
			if fit == 0 {
				ms[0].res <- result{err: fmt.Errorf("audit: append: %w", ErrTooLarge)}
				return 1
			}
			ms = ms[:fit]
			attempt--
			continue
		}
		if err != nil {
			// Staging failed before anything was written: fail the group,
			// but the log itself is fine.
			txn.Discard()
			l.failGroup(ms, results, fmt.Errorf("audit: append: %w", err))
			return len(ms)
		}
		if err = l.beforeCommit(); err == nil {
			err = txn.Commit()
		} else {
			txn.Discard()
		}
		if errors.Is(err, badger.ErrConflict) && attempt < maxConflictRetries {
			l.m.conflicts.Add(1)
			continue
		}
		if err != nil {
			err = fmt.Errorf("audit: commit: %w", err)
			if !errors.Is(err, badger.ErrConflict) {
				l.failed.CompareAndSwap(nil, &err)
				l.cfg.Logger.Error("audit: log write failed; refusing appends until reopened", "err", err)
			}
			l.failGroup(ms, results, err)
			return len(ms)
		}
		l.cache.add(st.uppers)
		st.uppers = st.uppers[:0]
		l.w = st
		l.size.Store(st.fr.n)
		now := l.cfg.Now()
		committed := 0
		for i, p := range ms {
			if results[i].err == nil {
				committed += len(results[i].entries)
				l.m.latency.observe(now.Sub(p.start).Seconds())
			}
		}
		// Metrics first: a caller that reads them once answered sees its
		// own commit counted.
		l.m.batch.observe(float64(committed))
		l.m.entries.Add(uint64(committed))
		for i, p := range ms {
			p.res <- results[i]
		}
		return len(ms)
	}
}

// failGroup answers every append of ms with err, except those whose change
// function already failed on its own.
func (l *Log) failGroup(ms []*pending, results []result, err error) {
	for i, p := range ms {
		if results[i].err == nil {
			results[i] = result{err: err}
			l.m.failures.Add(1)
		}
		p.res <- results[i]
	}
}

// stageGroup runs the changes of ms and writes their entries into txn. It
// returns the writer state after the group, the per-append results, and, if
// err is ErrTxnTooBig, how many appends fit before the one that overflowed.
func (l *Log) stageGroup(txn *badger.Txn, ms []*pending) (writerState, []result, int, error) {
	st := l.w
	st.fr = l.w.fr.clone()
	st.uppers = st.uppers[:0]
	now := l.cfg.Now().UTC()
	if now.Before(st.last) {
		now = st.last // entry times never go backwards
	}
	results := make([]result, len(ms))
	var stored []Hash
	for i, p := range ms {
		if p.change != nil {
			s := &stage{txn: txn, ks: l.ks, seq: st.fr.n}
			if err := runChange(p.change, s); err != nil {
				results[i].err = err
				continue
			}
			if err := s.flush(); err != nil {
				return st, results, i, err
			}
		}
		for _, kv := range p.extra {
			if err := txn.Set(kv[0], kv[1]); err != nil {
				return st, results, i, err
			}
		}
		results[i].entries = make([]Entry, 0, len(p.recs))
		for _, rec := range p.recs {
			var e Entry
			var err error
			if e, stored, err = l.stageEntry(txn, &st, rec, now, stored); err != nil {
				return st, results, i, err
			}
			results[i].entries = append(results[i].entries, e)
		}
	}
	return st, results, len(ms), nil
}

// stageEntry writes the next entry, recording rec at time now, and its tree
// hashes into txn, and advances st past it. stored is scratch space for the
// tree hashes, returned for reuse.
func (l *Log) stageEntry(txn *badger.Txn, st *writerState, rec Record, now time.Time, stored []Hash) (Entry, []Hash, error) {
	seq := st.fr.n
	e := Entry{Seq: seq, Time: now, Record: rec, PrevHash: st.head}
	// The stored value is version || prev || hash || canonical (see
	// encodeEntryValue), built in place.
	val := make([]byte, 1+2*HashSize, 1+2*HashSize+256)
	val = e.AppendCanonical(val)
	canonical := val[1+2*HashSize:]
	e.Hash = ChainHash(st.head, canonical)
	val[0] = entryValueVersion
	copy(val[1:], e.PrevHash[:])
	copy(val[1+HashSize:], e.Hash[:])
	stored = st.fr.push(LeafHash(canonical, e.Hash), stored[:0])
	st.uppers = uppers(st.uppers, seq, stored)
	if err := txn.Set(l.ks.key(kindEntry, seq), val); err != nil {
		return e, stored, err
	}
	if err := txn.Set(l.ks.key(kindTree, seq), encodeHashes(nil, stored)); err != nil {
		return e, stored, err
	}
	st.head, st.last = e.Hash, e.Time
	if e.Action != ActionCheckpoint {
		st.sinceCP++
	}
	return e, stored, nil
}

// checkWrite runs Config.WriteCheck, wrapping a refusal in *RefusedError.
func (l *Log) checkWrite() error {
	if l.cfg.WriteCheck == nil {
		return nil
	}
	if err := l.cfg.WriteCheck(); err != nil {
		return &RefusedError{Err: err}
	}
	return nil
}

// beforeCommit runs the test hook that can fail a commit.
func (l *Log) beforeCommit() error {
	if f := l.hookBeforeCommit.Load(); f != nil {
		return (*f)()
	}
	return nil
}

// maybeCheckpoint signs a checkpoint and records it as an entry when
// CheckpointEvery entries or CheckpointInterval have passed.
func (l *Log) maybeCheckpoint() {
	if l.w.sinceCP == 0 || l.failed.Load() != nil {
		return
	}
	every, interval := l.cfg.CheckpointEvery, l.cfg.CheckpointInterval
	due := every > 0 && l.w.sinceCP >= every ||
		interval > 0 && l.cfg.Now().Sub(l.w.cpTime) >= interval
	if !due {
		return
	}
	if err := l.checkWrite(); err != nil {
		return // refused (logged by the check); tried again on the next tick
	}
	size := l.w.fr.n
	cp, err := signCheckpoint(l.cfg.Signer, l.cfg.Origin, size, l.w.fr.root(), l.cfg.Now())
	if err == nil {
		p := &pending{
			recs: []Record{{Actor: l.cfg.Actor, Action: ActionCheckpoint, Details: map[string]string{
				"tree_size": strconv.FormatUint(size, 10),
				"root":      cp.Root.String(),
				"note":      string(cp.Note),
			}}},
			extra: [][2][]byte{{l.ks.key(kindCheckpoint, size), cp.Note}},
			res:   make(chan result, 1),
			start: l.cfg.Now(),
		}
		l.commitPrefix([]*pending{p})
		err = (<-p.res).err
	}
	if err != nil {
		l.m.checkpointFailures.Add(1)
		l.cfg.Logger.Warn("audit: checkpoint failed", "size", size, "err", err)
		return
	}
	l.latest.Store(cp)
	l.w.sinceCP, l.w.cpTime = 0, cp.Time
}

// signNow makes sure a stored checkpoint covers the whole log, without
// recording it as an entry (that entry would itself be uncovered).
func (l *Log) signNow() (*Checkpoint, error) {
	if err := l.failedErr(); err != nil {
		return nil, err
	}
	size := l.w.fr.n
	if cp := l.latest.Load(); cp != nil && cp.Size == size {
		return cp, nil
	}
	if err := l.checkWrite(); err != nil {
		return nil, fmt.Errorf("audit: store checkpoint %d: %w", size, err)
	}
	cp, err := signCheckpoint(l.cfg.Signer, l.cfg.Origin, size, l.w.fr.root(), l.cfg.Now())
	if err != nil {
		return nil, err
	}
	err = l.db.Update(func(txn *badger.Txn) error {
		return txn.Set(l.ks.key(kindCheckpoint, size), cp.Note)
	})
	if err != nil {
		return nil, fmt.Errorf("audit: store checkpoint %d: %w", size, err)
	}
	l.latest.Store(cp)
	l.w.sinceCP, l.w.cpTime = 0, cp.Time
	return cp, nil
}
