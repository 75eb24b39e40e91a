package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// dropLogEvery rate-limits the quota log line: one line per burst with the counts.
const dropLogEvery = 10 * time.Second

// txn is one write transaction of the committer with its bucket handles and
// the state it will publish if the commit succeeds.
type txn struct {
	tx      *bolt.Tx
	lanes   [NumLanes]*bolt.Bucket
	dead    *bolt.Bucket
	meta    *bolt.Bucket
	sys     *bolt.Bucket
	w       state
	dirty   [NumLanes]bool // head of the lane may have changed
	merging bool           // holds markMu until the commit is done
	segMin  int            // see Options.segmentMinBytes
	arena   *arena         // the committer's, for values stored by this transaction
	// pend holds the sealed records appended in this transaction, per lane,
	// until flushPending stores each lane's share as one segment.
	pend [NumLanes][][]byte
	// setAside: damaged entries met and moved to the dead letters, for the
	// log once the transaction is committed.
	setAside []badRecord
}

// flushPending stores the records appended so far in this transaction.
func (t *txn) flushPending() error {
	for l := range t.pend {
		if err := putRecords(t.lanes[l], t.pend[l], t.segMin, t.arena); err != nil {
			return err
		}
		t.pend[l] = t.pend[l][:0]
	}
	return nil
}

// opFunc is a write applied inside a group transaction. It returns a
// *rejectError when it fails before changing anything (only its caller sees
// the error); any other error aborts the whole transaction.
type opFunc func(t *txn) error

type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

type request struct {
	ctx     context.Context
	recs    []Record // Append: lanes (the encoded records are in enc)
	enc     [][]byte // Append: encoded records without Seq, capacity for it
	sums    []uint32 // Append: CRC of each enc
	meta    []KV     // Append
	fn      opFunc   // everything else
	nrec    int
	arrived time.Time
	taken   atomic.Int32 // 0 waiting, 1 taken by the committer, 2 given up by the caller
	seqs    []uint64
	err     error
	done    chan struct{}
}

const (
	reqWaiting = iota
	reqTaken
	reqAbandoned
)

// submit hands r to the committer and waits for its commit. Once the
// committer has taken r, submit waits for the outcome even if ctx ends, so an
// error always means nothing of r was written.
func (q *Queue) submit(ctx context.Context, r *request) error {
	if q.opts.ReadOnly {
		return ErrReadOnly
	}
	if q.closed.Load() {
		return ErrClosed
	}
	if err := q.Err(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.ctx = ctx
	r.done = make(chan struct{})
	r.arrived = time.Now()
	q.inflight.Add(1) // the committer (or this caller, when it gives up first) takes it off
	select {
	case q.reqs <- r:
	case <-q.quit:
		q.inflight.Add(-1)
		return ErrClosed
	case <-ctx.Done():
		q.inflight.Add(-1)
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		if r.taken.CompareAndSwap(reqWaiting, reqAbandoned) {
			q.inflight.Add(-1)
			return ctx.Err()
		}
		<-r.done
		return r.err
	}
}

// run is the committer. It collects requests and commits them in one
// transaction as soon as CommitRecords wait, or every request in flight has
// arrived (nobody else is about to join: waiting longer would only add
// latency), or the commit window, counted from the first request's arrival,
// has passed. Requests that arrive while a commit is running form the next
// group, so under load groups grow by themselves.
// fileCheckEvery is how often an idle committer checks that its file is
// still at its path, and how soon it tries again to write it back
// (checkFile).
const fileCheckEvery = 5 * time.Second

func (q *Queue) run(cur state) {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	logTimer := time.NewTimer(time.Hour) // logs a burst's tail when traffic stops
	defer logTimer.Stop()
	fileTick := time.NewTicker(q.opts.fileCheckEvery) // see checkFile, when idle
	defer fileTick.Stop()
	for {
		var batch []*request
		if cur.burstDropped != [NumLanes]uint64{} || cur.burstMerged != 0 {
			logTimer.Reset(max(time.Millisecond, dropLogEvery-time.Since(q.lastLog)))
		} else {
			logTimer.Stop()
		}
		select {
		case r := <-q.reqs:
			batch = append(batch, r)
		case <-logTimer.C:
			q.logBurst(&cur, false)
			continue
		case <-fileTick.C:
			idle := q.working()
			_ = q.checkFile() // the next commit reports a failure
			q.checkDiskRoom(&cur)
			q.keepReserve()
			q.backFile()
			idle()
			q.logBurst(&cur, false) // in case both were due at once
			continue
		case <-q.quit:
			q.logBurst(&cur, true)
			return
		}
		n := batch[0].nrec
		deadline := batch[0].arrived.Add(q.opts.CommitWindow)
		quitting := false
	collect:
		for n < q.opts.CommitRecords {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
				n += r.nrec
				continue
			default:
			}
			if int64(len(batch)) >= q.inflight.Load() {
				break
			}
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			timer.Reset(wait)
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
				n += r.nrec
			case <-timer.C:
				break collect
			case <-q.quit:
				quitting = true
				break collect
			}
			timer.Stop()
		}
		timer.Stop()
		idle := q.working()
		if err := q.checkFile(); err != nil {
			q.reject(batch, err)
		} else {
			q.commit(&cur, batch)
			q.raiseAfterCut(&cur)
			q.maybeShrink(&cur)
		}
		idle()
		if quitting {
			q.logBurst(&cur, true)
			return
		}
	}
}

// working marks the committer busy with the disk from now until the
// returned func is called (WriteRunningSince): a commit with its retries
// and fdatasync, and the file work between transactions — the file check
// and its write-back, the reserve file, fallocate, a shrink. Each holds
// every append as a transaction does, so a disk that does not complete
// one must show as a stall too (the stall review: only the transaction was
// marked, and a reserve file written on a frozen disk held the appends
// with /readyz 200).
func (q *Queue) working() (idle func()) {
	since := time.Now().UnixNano()
	q.txSince.Store(since)
	return func() {
		q.txSince.Store(0)
		if d := time.Now().UnixNano() - since; d > q.longestWrite.Load() {
			q.longestWrite.Store(d) // the committer is its only writer
		}
	}
}

// reject fails every request of batch with err, committing nothing.
func (q *Queue) reject(batch []*request, err error) {
	for _, r := range batch {
		if !r.taken.CompareAndSwap(reqWaiting, reqTaken) {
			continue // the caller gave up; it has already returned
		}
		r.err = err
		q.inflight.Add(-1)
		close(r.done)
	}
}

func (q *Queue) commit(cur *state, batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if !r.taken.CompareAndSwap(reqWaiting, reqTaken) {
			continue // the caller gave up; it has already returned
		}
		if err := r.ctx.Err(); err != nil {
			r.err = err
			q.inflight.Add(-1)
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := q.runTx(cur, live, true)
	cut := errors.Is(err, berrors.ErrMaxSizeReached)
	if cut && q.cutPending {
		// The last cut freed room that bbolt reuses only once no read
		// transaction that began before it is open: a status scan or a
		// forwarding round's read holds it. That is no reason to cut
		// again (the probe saw a second cut 10 ms after the first, half
		// the buffer gone until a restart): try again, and while reads
		// are still open the batch waits (ErrFull) instead.
		err = q.runTx(cur, live, true)
		cut = errors.Is(err, berrors.ErrMaxSizeReached) && q.db.Stats().OpenTxN == 0
	}
	if cut {
		q.shrinkBudget(cur)
		err = q.runTx(cur, live, true)
	} else if errors.Is(err, errNoGrowth) && q.reserveBack() {
		// Refused growth for a reserve lent on a disk that has room
		// again: the reserve is back, and the file may grow.
		err = q.runTx(cur, live, true)
	} else if diskFullErr(err) && q.lowerBudgetForDisk(cur) {
		err = q.runTx(cur, live, true)
	}
	if err != nil && len(live) > 1 {
		// One bad request must not fail its neighbours: retry each alone.
		for _, r := range live {
			if e := q.runTx(cur, []*request{r}, r.fn == nil); e != nil {
				r.err = e
			}
		}
	} else if err != nil {
		if live[0].fn != nil && errors.Is(err, berrors.ErrMaxSizeReached) {
			err = q.runTx(cur, live, false)
		}
		if err != nil {
			live[0].err = err
		}
	}
	lent := q.reserveLent.Load() != 0
	for _, r := range live {
		if r.fn != nil && diskFullErr(r.err) && !lent && q.lendReserve() {
			// An acknowledgement (or another write that is not an
			// append) that failed alone for a full disk gets the reserve
			// file's blocks; appends do not grow the file into them
			// (lendReserve). Only then: a batch that failed because its
			// appends needed room is no reason to give the reserve up.
			// Not again once it is lent: it failed with those blocks
			// free already (the review: tried twice a round).
			if e := q.runTx(cur, []*request{r}, false); e != nil {
				r.err = e
			}
		}
		if r.err == nil && r.fn == nil {
			q.cutPending = false // an append fitted after the cut
		}
		switch {
		case errors.Is(r.err, berrors.ErrMaxSizeReached):
			r.err = fmt.Errorf("%w: the file is at its cap: %w", ErrQuota, r.err)
		case errors.Is(r.err, syscall.ENOSPC), errors.Is(r.err, syscall.EDQUOT):
			// A full disk is backpressure, not a crash: callers treat it like a full quota.
			r.err = fmt.Errorf("%w: %w", ErrDiskFull, r.err)
		}
		q.inflight.Add(-1)
		close(r.done)
	}
}

// shrinkBudget reacts to bbolt refusing to grow the file past MaxBytes: the
// logical budget was too optimistic for this data, so it is lowered below
// what is used now and a delete-only transaction frees the difference.
func (q *Queue) shrinkBudget(cur *state) {
	old := q.budget.Load()
	nb := min(old, cur.used()) * 9 / 10
	if nb <= 0 {
		// Nothing stored that a lower budget could free (one transaction
		// bigger than the file's room): a budget of 0 would be no limit.
		q.log.Warn("buffer file reached its share of max_bytes with nothing stored that a lower budget could free", "budget", old, "used", cur.used())
		return
	}
	q.cutPending = true
	q.budget.Store(nb)
	q.ceiling.Store(nb)
	q.log.Warn("buffer file reached its share of max_bytes (max_bytes less the reserve file); lowering the logical budget", "old_budget", old, "new_budget", nb, "used", cur.used())
	if err := q.fitBudget(cur); err != nil {
		q.log.Error("buffer: freeing space after reaching max_bytes failed", "err", err)
	}
}

// raiseAfterCut gives back what max_bytes allows once the buffer has
// drained to half of a budget shrinkBudget cut: each cut was learned from
// a file at its cap, which it is no longer. Before, a cut lasted until a
// restart, and cuts during one drain added up (the spec audit: five in
// 2.5 s took 550 kB to 325 kB, below what the rebook records alone held,
// and every append failed with the buffer empty and Odoo online). Should
// the estimate be too high again, the next fill cuts again, once.
func (q *Queue) raiseAfterCut(cur *state) {
	full, ceil := budgetFor(q.opts.MaxBytes), q.ceiling.Load()
	if full == 0 || ceil >= full || cur.used() > ceil/2 {
		return
	}
	q.ceiling.Store(full)
	q.cutPending = false
	if q.diskFull.Load() == 0 { // else checkDiskRoom raises it, up to the ceiling
		q.budget.Store(full)
	}
	q.log.Info("buffer: drained well below the budget cut when the file reached max_bytes; the budget is back to what max_bytes gives",
		"budget", full, "was", ceil, "used", cur.used())
}

// fitBudget frees what is over a budget just lowered, in a delete-only
// transaction, in the quota's order (makeRoom).
func (q *Queue) fitBudget(cur *state) error {
	fn := func(t *txn) error {
		_, err := q.makeRoom(t, 0, LaneCounts)
		return err
	}
	return q.runTx(cur, []*request{{fn: fn}}, false)
}

func (q *Queue) beginTxn(cur *state) (*txn, error) {
	tx, err := q.db.Begin(true)
	if err != nil {
		return nil, err
	}
	t := &txn{tx: tx, w: *cur, segMin: q.opts.segmentMinBytes, arena: &q.arena}
	for l := range t.pend {
		t.pend[l] = q.pend[l][:0] // reused: the slices of the last transaction are done with
	}
	for l := range Lane(NumLanes) {
		t.lanes[l] = tx.Bucket(bucketLanes[l])
		t.lanes[l].FillPercent = 1.0 // keys are sequential
	}
	t.dead = tx.Bucket(bucketDead)
	t.dead.FillPercent = 1.0
	t.meta = tx.Bucket(bucketMeta)
	t.sys = tx.Bucket(bucketSys)
	return t, nil
}

// runTx applies reqs in one transaction and commits it. With enforceMax
// the file may grow to appendCap; without (deletes, which must never be
// blocked by a full file, or a full buffer could not drain) to MaxBytes —
// the reserve between the two is theirs — and, only if that is not enough,
// past it.
func (q *Queue) runTx(cur *state, reqs []*request, enforceMax bool) error {
	if enforceMax && q.reserveLent.Load() != 0 && slices.ContainsFunc(reqs, func(r *request) bool { return r.fn == nil }) {
		// The reserve is given up for the writes that are not appends:
		// appends go into the pages the file has, or wait. (Those others
		// alone are not held so: their failing would only try a lowering.)
		return q.runTxCapped(cur, reqs, noGrowth)
	}
	if enforceMax || q.opts.MaxBytes == 0 {
		return q.runTxCapped(cur, reqs, q.appendCap())
	}
	err := q.runTxCapped(cur, reqs, int(q.opts.MaxBytes))
	if errors.Is(err, berrors.ErrMaxSizeReached) {
		if time.Since(q.pastMaxLogged) >= dropLogEvery {
			q.pastMaxLogged = time.Now()
			q.log.Warn("buffer: a delete takes the file past its share of max_bytes (reads in progress hold the pages freed before)",
				"max_bytes", q.opts.MaxBytes+q.reserve, "file_max_bytes", q.opts.MaxBytes)
		}
		err = q.runTxCapped(cur, reqs, 0)
	}
	return err
}

// appendCap is bbolt's MaxSize for appends: MaxBytes less one growth step,
// kept for deletes (runTx).
func (q *Queue) appendCap() int {
	if q.opts.MaxBytes == 0 {
		return 0
	}
	return int(q.opts.MaxBytes) - allocSize(q.opts.MaxBytes)
}

// noGrowth, as runTxCapped's maxSize: no page past the file's high water
// mark (the pages it has written, which have their disk blocks).
const noGrowth = -1

// errNoGrowth is what an append gets that needed the file to grow while
// the reserve is given up for acknowledgements (lendReserve): the disk is
// full, so it is ENOSPC to the callers (ErrDiskFull).
var errNoGrowth = fmt.Errorf("the disk is full and the buffer's reserve file is given up for acknowledgements: the file does not grow for appends until the disk has room: %w", syscall.ENOSPC)

// runTxCapped is runTx with bbolt's MaxSize at maxSize (0: none; noGrowth).
func (q *Queue) runTxCapped(cur *state, reqs []*request, maxSize int) (err error) {
	if err := q.Err(); err != nil {
		return err
	}
	capAt := maxSize
	if maxSize == noGrowth {
		capAt = q.appendCap() // set to the high water mark once the transaction has begun
	}
	if q.db.MaxSize != capAt || maxSize == noGrowth {
		q.db.MaxSize = capAt
		defer func() { q.db.MaxSize = q.appendCap() }()
	}
	t, err := q.beginTxn(cur)
	if err != nil {
		return err
	}
	if maxSize == noGrowth {
		// bbolt refuses a page at the end once the file would reach past
		// MaxSize: one page past the high water mark refuses them all,
		// and pages from its free list are still taken.
		q.db.MaxSize = int(t.tx.Size()) + q.db.Info().PageSize
		defer func() {
			if errors.Is(err, berrors.ErrMaxSizeReached) {
				err = errNoGrowth
			}
		}()
	}
	defer q.arena.reset() // after Commit or Rollback: bbolt holds no value of it
	defer func() {
		if t.merging {
			q.markMu.Unlock()
		}
	}()
	for _, r := range reqs {
		r.err, r.seqs = nil, nil
		var e error
		if r.fn != nil {
			e = r.fn(t)
		} else {
			e = q.applyAppend(t, r)
		}
		var rj *rejectError
		if errors.As(e, &rj) {
			r.err = rj.err
			continue
		}
		if e != nil {
			_ = t.tx.Rollback()
			return e
		}
	}
	if err := t.flushPending(); err != nil {
		_ = t.tx.Rollback()
		return err
	}
	if err := q.finishTxn(t, cur); err != nil {
		_ = t.tx.Rollback()
		return err
	}
	txid := t.tx.ID()
	if err := t.tx.Commit(); err != nil {
		q.failIfHalfCommitted(txid, err)
		return err
	}
	for l := range t.pend {
		q.pend[l] = t.pend[l][:0]
	}
	q.commits.Add(1)
	q.backFile()
	*cur = t.w
	q.mu.Lock()
	q.st = t.w
	q.mu.Unlock()
	q.logBurst(cur, false)
	if b := t.setAside; len(b) > 0 {
		q.log.Error("buffer file: damaged records met while running (damaged on the disk?): moved them to the dead letters",
			"count", len(b), "err", b[0].err, "lane", b[0].lane.String(), "seq", b[0].seq)
	}
	return nil
}

// failIfHalfCommitted handles a commit that failed after bbolt wrote its
// meta page (the sync of that page failed: a disk error). The next
// transaction then sees that commit through the page cache, although the
// disk may not have it, and the queue's counters do not: appends would
// reuse its sequence numbers ("bucket already exists" on every retry, seen
// in the power-cut test). Only a reopen tells what the disk kept, so the
// queue fails: every request gets the reason, and the agent stops for its
// restart to open the file anew.
func (q *Queue) failIfHalfCommitted(txid int, err error) {
	visible := false
	_ = q.db.View(func(tx *bolt.Tx) error {
		visible = tx.ID() >= txid
		return nil
	})
	if visible {
		q.fail(fmt.Errorf("a commit failed after its meta page was written, so what the disk kept is known only after a reopen: %w", err))
	}
}

// finishTxn writes the persistent counters and refreshes lane head times.
func (q *Queue) finishTxn(t *txn, cur *state) error {
	w := &t.w
	put := func(key []byte, nv, ov uint64) error {
		if nv == ov {
			return nil
		}
		return putUint64(t.sys, key, nv)
	}
	if err := put(sysSeq, w.seq, cur.seq); err != nil {
		return err
	}
	if err := put(sysDLSeq, w.dlSeq, cur.dlSeq); err != nil {
		return err
	}
	if err := put(sysMerged, w.merged, cur.merged); err != nil {
		return err
	}
	if err := put(sysDroppedDamaged, w.damagedDropped, cur.damagedDropped); err != nil {
		return err
	}
	if err := put(sysDroppedDead, w.deadDropped, cur.deadDropped); err != nil {
		return err
	}
	for l := range Lane(NumLanes) {
		if err := put(sysDropped[l], w.lanes[l].Dropped, cur.lanes[l].Dropped); err != nil {
			return err
		}
		if !t.dirty[l] {
			continue
		}
		err := t.repairing(l, func() error {
			ls := &t.w.lanes[l]
			ls.Oldest = time.Time{}
			if ls.Pending == 0 {
				return nil
			}
			v, err := firstRecord(t.lanes[l])
			if err != nil {
				return fmt.Errorf("lane %s head: %w", l, err)
			}
			if v == nil {
				return fmt.Errorf("lane %s: %d records counted but none found", l, ls.Pending)
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("lane %s head %d: %w", l, storedSeq(v), err)
			}
			ls.Oldest = rec.Time
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// logBurst logs quota drops and merges, at most once per dropLogEvery.
func (q *Queue) logBurst(cur *state, force bool) {
	b := cur.burstDropped
	if b == [NumLanes]uint64{} && cur.burstMerged == 0 {
		return
	}
	now := time.Now()
	if !force && !q.lastLog.IsZero() && now.Sub(q.lastLog) < dropLogEvery {
		return
	}
	q.lastLog = now
	attrs := []any{"dropped_telemetry", b[LaneTelemetry], "dropped_events", b[LaneEvents],
		"merged_counts", cur.burstMerged, "used_bytes", cur.used(), "budget_bytes", q.budget.Load()}
	if b[LaneEvents] > 0 {
		// Which machines lost downtime, and from when to when: what a
		// person must look into (the disk probe had a number only).
		attrs = append(attrs, "events_of", strings.Join(cur.burstEvents, ","),
			"events_from", cur.burstFirstEv.UTC(), "events_to", cur.burstLastEv.UTC())
		if !cur.burstFirstSrc.IsZero() {
			// When they happened, by the sources' clocks (the MQTT probe:
			// buffered times alone do not say which shift lost downtime).
			attrs = append(attrs, "happened_from", cur.burstFirstSrc.UTC(), "happened_to", cur.burstLastSrc.UTC())
		}
	}
	q.log.Warn("buffer quota reached: records dropped or merged to stay under max_bytes", attrs...)
	cur.burstDropped = [NumLanes]uint64{}
	cur.burstMerged = 0
	cur.burstEvents, cur.burstFirstEv, cur.burstLastEv = nil, time.Time{}, time.Time{}
	cur.burstFirstSrc, cur.burstLastSrc = time.Time{}, time.Time{}
	q.mu.Lock()
	q.st.burstDropped, q.st.burstMerged = cur.burstDropped, 0
	q.mu.Unlock()
}

func validateMeta(kvs []KV) error {
	for _, kv := range kvs {
		if kv.Key == "" || len(kv.Key) > bolt.MaxKeySize {
			return fmt.Errorf("meta key %q: length %d outside [1, %d]", kv.Key, len(kv.Key), bolt.MaxKeySize)
		}
	}
	return nil
}

func putMeta(t *txn, kvs []KV) error {
	for _, kv := range kvs {
		k := []byte(kv.Key)
		if old := t.meta.Get(k); old != nil {
			t.w.metaBytes -= metaSize(len(k), len(old))
		}
		if kv.Value == nil {
			if err := t.meta.Delete(k); err != nil {
				return err
			}
			continue
		}
		// Not copied: bbolt holds the value until the transaction ends, and
		// the caller's call returns only after that (submit waits for a
		// request the committer took; one it did not take is never
		// applied). The agent writes each changed machine's state with
		// every commit: the copies were 15% of the bytes the IngestCPU benchmark allocated.
		if err := t.meta.Put(k, kv.Value); err != nil {
			return err
		}
		t.w.metaBytes += metaSize(len(k), len(kv.Value))
	}
	return nil
}

// encPool recycles Append's encoding buffers (up to encPoolMax bytes).
var encPool = sync.Pool{New: func() any { return new([]byte) }}

const encPoolMax = 1 << 20

// Append makes recs durable (fsync'd bbolt commit) together with the meta
// entries, in one transaction shared with concurrent appenders (group
// commit), and returns their sequence numbers once committed. Under quota
// pressure it drops telemetry, merges counts, then drops events (incoming
// telemetry never displaces events or counts); ErrFull if that is not enough.
func (q *Queue) Append(ctx context.Context, recs []Record, meta ...KV) ([]uint64, error) {
	if len(recs) == 0 && len(meta) == 0 {
		return nil, nil
	}
	for i, r := range recs {
		if r.Lane >= NumLanes {
			return nil, fmt.Errorf("append: record %d: unknown lane %d", i, r.Lane)
		}
	}
	if err := validateMeta(meta); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	r := &request{recs: recs, meta: meta, nrec: len(recs) + len(meta)}
	// Encode and checksum here, in parallel across callers; the committer
	// only adds the Seq.
	total := 0
	for _, rec := range recs {
		total += encodedSize(rec)
	}
	bp := encPool.Get().(*[]byte)
	if cap(*bp) < total {
		*bp = make([]byte, total)
	}
	buf := (*bp)[:total]
	// The committer is done with buf once submit returns (it copies records
	// into segments, and bbolt holds plain values only until the commit);
	// an abandoned request is never touched.
	defer func() {
		if cap(buf) <= encPoolMax {
			encPool.Put(bp)
		}
	}()
	r.enc = make([][]byte, len(recs))
	r.sums = make([]uint32, len(recs))
	now := time.Now().UTC()
	off := 0
	for i, rec := range recs {
		if rec.Time.IsZero() {
			rec.Time = now
		}
		n := encodedSize(rec)
		prefix, sum := encodePrefix(buf[off:off:off+n], rec)
		r.enc[i] = prefix
		r.sums[i] = sum
		off += n
	}
	if err := q.submit(ctx, r); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	return r.seqs, nil
}

func (q *Queue) applyAppend(t *txn, r *request) error {
	var need int64
	prio := LaneTelemetry
	for i, rec := range r.recs {
		need += int64(len(r.enc[i]) + 12 + elemOverhead)
		prio = min(prio, rec.Lane)
	}
	if len(r.recs) == 0 {
		// State only (a counter's last value, a source's session): the
		// caller's own state weighs like an event, not like telemetry —
		// refused, it held every append of its source back for good once
		// the buffer was full of events (the self-probe: 50 s and more).
		prio = LaneEvents
	}
	for _, kv := range r.meta {
		if kv.Value != nil {
			need += metaSize(len(kv.Key), len(kv.Value))
		}
	}
	budget := q.budget.Load()
	if budget > 0 && t.w.used()+need > budget {
		// What the entries replace is freed: looked up only when the
		// budget is at stake (a lookup an entry; the agent writes each
		// changed machine's state with every commit).
		for _, kv := range r.meta {
			if old := t.meta.Get([]byte(kv.Key)); old != nil {
				need -= metaSize(len(kv.Key), len(old))
			}
		}
	}
	if budget > 0 && t.w.used()+need > budget {
		if need > budget {
			return &rejectError{fmt.Errorf("%w: %d bytes exceed the whole budget of %d", ErrQuota, need, budget)}
		}
		// Making room walks the lanes: store what this transaction appended
		// so far first, so that it is seen (and may be dropped) like before.
		if err := t.flushPending(); err != nil {
			return err
		}
		ok, err := q.makeRoom(t, need, prio)
		if err != nil {
			return err
		}
		if !ok {
			return &rejectError{fmt.Errorf("%w: need %d bytes, %d of %d in use", ErrQuota, need, t.w.used(), budget)}
		}
	}
	seqs := make([]uint64, len(r.recs))
	for i, rec := range r.recs {
		t.w.seq++
		seq := t.w.seq
		// The prefix has capacity for Seq and checksum; resealing after a
		// retried transaction overwrites the same bytes.
		v := sealRecord(r.enc[i], r.sums[i], seq)
		t.pend[rec.Lane] = append(t.pend[rec.Lane], v)
		ls := &t.w.lanes[rec.Lane]
		if ls.Pending == 0 {
			t.dirty[rec.Lane] = true
		}
		ls.Pending++
		ls.Bytes += int64(len(v) + elemOverhead)
		seqs[i] = seq
	}
	if err := putMeta(t, r.meta); err != nil {
		return err
	}
	r.seqs = seqs
	return nil
}

// Ack deletes delivered records (by Lane and Seq) and writes the meta entries
// in one durable transaction. Records already gone are ignored.
func (q *Queue) Ack(ctx context.Context, recs []Record, meta ...KV) error {
	for i, r := range recs {
		if r.Lane >= NumLanes {
			return fmt.Errorf("ack: record %d: unknown lane %d", i, r.Lane)
		}
	}
	if err := validateMeta(meta); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	var seqs [NumLanes][]uint64
	for _, r := range recs {
		seqs[r.Lane] = append(seqs[r.Lane], r.Seq)
	}
	for l := range seqs {
		slices.Sort(seqs[l])
	}
	fn := func(t *txn) error {
		for l := range Lane(NumLanes) {
			if err := t.remove(l, seqs[l], nil); err != nil {
				return err
			}
		}
		return putMeta(t, meta)
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: len(recs) + len(meta)}); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// remove deletes records by Seq (ascending; missing ones are skipped) from a
// lane and counts them out of its stats; also, when not nil, passes each
// removed record's stored bytes (valid during the call) to fn.
func (t *txn) remove(lane Lane, seqs []uint64, fn func(v []byte)) error {
	// Records removed before a damaged segment stopped the removal are not
	// met again: the retry passes over them.
	return t.repairing(lane, func() error {
		return removeSeqs(t.lanes[lane], seqs, t.segMin, t.arena, func(v []byte) {
			ls := &t.w.lanes[lane]
			ls.Pending--
			ls.Bytes -= int64(len(v) + elemOverhead)
			t.dirty[lane] = true
			if fn != nil {
				fn(v)
			}
		})
	})
}

// deleteRecord removes one record from its lane and returns its stored bytes
// (nil if it was not there).
func (t *txn) deleteRecord(lane Lane, seq uint64) ([]byte, error) {
	var out []byte
	err := t.remove(lane, []uint64{seq}, func(v []byte) { out = bytes.Clone(v) })
	return out, err
}

// PutMeta writes meta entries durably (nil Value deletes).
func (q *Queue) PutMeta(ctx context.Context, kvs ...KV) error {
	if err := validateMeta(kvs); err != nil {
		return fmt.Errorf("put meta: %w", err)
	}
	if len(kvs) == 0 {
		return nil
	}
	fn := func(t *txn) error { return putMeta(t, kvs) }
	if err := q.submit(ctx, &request{fn: fn, nrec: len(kvs)}); err != nil {
		return fmt.Errorf("put meta: %w", err)
	}
	return nil
}

// DeadLetter atomically moves a pending record (by Lane and Seq) out of its
// lane into the dead-letter bucket with the reason. ErrNotFound if it is not pending.
func (q *Queue) DeadLetter(ctx context.Context, rec Record, reason string) error {
	if rec.Lane >= NumLanes {
		return fmt.Errorf("dead letter: unknown lane %d", rec.Lane)
	}
	fn := func(t *txn) error {
		v := getRecord(t.lanes[rec.Lane], rec.Seq)
		if v == nil {
			return &rejectError{fmt.Errorf("%s seq %d: %w", rec.Lane, rec.Seq, ErrNotFound)}
		}
		stored, err := decodeRecord(v)
		if err != nil {
			return &rejectError{fmt.Errorf("%s seq %d: %w", rec.Lane, rec.Seq, err)}
		}
		if err := putDeadLetter(t.dead, &t.w, DeadLetter{Record: stored, Reason: reason, At: time.Now()}); err != nil {
			return err
		}
		_, err = t.deleteRecord(rec.Lane, rec.Seq)
		return err
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: 1}); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	// The caller says why at its own level and rate (the agent: once a
	// minute per key); `deadletter list` is the record.
	q.log.Debug("record moved to dead letters", "seq", rec.Seq, "lane", rec.Lane.String(), "key", rec.Key, "reason", reason)
	return nil
}

// DeadLetterAs atomically moves pending records of one lane out of it as
// one dead letter, as: a caller that folds records (consecutive count
// records of a key, which are additive) keeps one refusal one dead letter
// instead of one per record. recs must be in ascending Seq and all pending
// (else ErrNotFound, and nothing moves); as.Lane must be theirs.
func (q *Queue) DeadLetterAs(ctx context.Context, recs []Record, as Record, reason string) error {
	if as.Lane >= NumLanes {
		return fmt.Errorf("dead letter: unknown lane %d", as.Lane)
	}
	if len(recs) == 0 {
		return nil
	}
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		if r.Lane != as.Lane || (i > 0 && r.Seq <= seqs[i-1]) {
			return fmt.Errorf("dead letter: records of several lanes or out of order (seq %d)", r.Seq)
		}
		seqs[i] = r.Seq
	}
	fn := func(t *txn) error {
		// All there, or nothing moves: one walk over the range.
		i, last := 0, seqs[len(seqs)-1]
		err := walkLane(t.lanes[as.Lane], seqs[0]-1, func(r laneRec) error {
			if r.bad != nil || r.seq > last || r.seq > seqs[i] {
				return errStop
			}
			if r.seq == seqs[i] {
				if i++; i == len(seqs) {
					return errStop
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if i < len(seqs) {
			return &rejectError{fmt.Errorf("%s seq %d: %w", as.Lane, seqs[i], ErrNotFound)}
		}
		if err := putDeadLetter(t.dead, &t.w, DeadLetter{Record: as, Reason: reason, At: time.Now()}); err != nil {
			return err
		}
		return t.remove(as.Lane, seqs, nil)
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: len(recs)}); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	q.log.Debug("records moved to dead letters as one", "records", len(recs), "first_seq", seqs[0], "last_seq", seqs[len(seqs)-1],
		"lane", as.Lane.String(), "key", as.Key, "reason", reason)
	return nil
}

// putDeadLetter stores d under the next dead-letter id of st (its ID is
// set here) and counts it in st.
func putDeadLetter(dead *bolt.Bucket, st *state, d DeadLetter) error {
	st.dlSeq++
	d.ID = st.dlSeq
	enc := encodeDeadLetter(d)
	if err := dead.Put(seqKey(d.ID), enc); err != nil {
		return err
	}
	st.dead++
	st.deadBytes += int64(len(enc) + elemOverhead)
	l := deadLetterAt(d.ID, enc) // as a read of it says (Damaged)
	st.latestDead = &l
	return nil
}

// takeDeadLetter removes dead letter id and returns it.
func (t *txn) takeDeadLetter(id uint64) (DeadLetter, error) {
	k := seqKey(id)
	v := t.dead.Get(k)
	if v == nil {
		return DeadLetter{}, &rejectError{fmt.Errorf("dead letter %d: %w", id, ErrNotFound)}
	}
	d := deadLetterAt(id, v)
	size := int64(len(v) + elemOverhead)
	if err := t.dead.Delete(k); err != nil {
		return d, err
	}
	t.w.dead--
	t.w.deadBytes -= size
	if l := t.w.latestDead; l != nil && l.ID == id {
		// The newest gone: the one before it (a read inside the write
		// transaction; the dead letters' ids only grow).
		t.w.latestDead = nil
		c := t.dead.Cursor()
		// (First before Last: bbolt's Last loops for ever on a bucket
		// whose leaves this transaction emptied all, as a retry or drop
		// of all does: RetryDeadLetters, DropDeadLetters.)
		if k, _ := c.First(); k != nil {
			if k, v := c.Last(); len(k) == 8 {
				l := deadLetterAt(beUint64(k), v)
				t.w.latestDead = &l
			}
		}
	}
	return d, nil
}

// RetryDeadLetter moves a dead letter back into its lane. An event or
// telemetry record keeps its Seq, so it is read before later records of its
// lane and per-key order holds. A count record (additive: its order does
// not matter) gets a new Seq instead: with its old one it could land inside
// a range a reader took in flight and acknowledges by Seq, and be deleted
// with that range without having been delivered.
func (q *Queue) RetryDeadLetter(ctx context.Context, id uint64) error {
	var d DeadLetter
	fn := func(t *txn) error {
		if v := t.dead.Get(seqKey(id)); v != nil && deadLetterAt(id, v).Damaged {
			return &rejectError{fmt.Errorf("dead letter %d: %w", id, ErrDamaged)}
		}
		var err error
		d, err = t.retryDeadLetter(id)
		return err
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: 1}); err != nil {
		return fmt.Errorf("retry dead letter: %w", err)
	}
	q.logRetried(d)
	return nil
}

// RetryDeadLetters retries the dead letters ids (as RetryDeadLetter) in
// one transaction: all of them or, when it fails, none. Those no longer
// there (retried or dropped meanwhile) and damaged ones are left out; done
// are the ids retried. A retry of many made one by one was left half done
// when it stopped between two (the caller gave up on a disk that stalled).
func (q *Queue) RetryDeadLetters(ctx context.Context, ids []uint64) (done []uint64, err error) {
	return q.deadLettersAsOne(ctx, "retry", ids, func(id uint64, v []byte) bool { return deadLetterAt(id, v).Damaged },
		(*txn).retryDeadLetter, q.logRetried)
}

// deadLettersAsOne does act (a retry or a drop: what) to the dead letters
// ids in one transaction, all or none, leaving out those no longer there
// and those skip names; it logs each one done with logged, and returns
// their ids.
func (q *Queue) deadLettersAsOne(ctx context.Context, what string, ids []uint64, skip func(id uint64, v []byte) bool,
	act func(t *txn, id uint64) (DeadLetter, error), logged func(DeadLetter)) (done []uint64, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var ds []DeadLetter
	fn := func(t *txn) error {
		ds = ds[:0]
		for _, id := range ids {
			v := t.dead.Get(seqKey(id))
			if v == nil || (skip != nil && skip(id, v)) {
				continue
			}
			d, err := act(t, id)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		return nil
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: len(ids)}); err != nil {
		return nil, fmt.Errorf("%s dead letters: %w", what, err)
	}
	for _, d := range ds {
		logged(d)
		done = append(done, d.ID)
	}
	return done, nil
}

// retryDeadLetter moves dead letter id back into its lane (see
// RetryDeadLetter).
func (t *txn) retryDeadLetter(id uint64) (DeadLetter, error) {
	d, err := t.takeDeadLetter(id)
	if err != nil {
		return d, err
	}
	rec := d.Record
	if rec.Lane == LaneCounts {
		t.w.seq++
		rec.Seq = t.w.seq
	}
	v := encodeRecord(nil, rec)
	// Keep the invariant of segments: no plain key inside one's range.
	if err := t.repairing(rec.Lane, func() error { return explodeAround(t.lanes[rec.Lane], rec.Seq, t.arena) }); err != nil {
		return d, err
	}
	if err := t.lanes[rec.Lane].Put(seqKey(rec.Seq), v); err != nil {
		return d, err
	}
	ls := &t.w.lanes[rec.Lane]
	ls.Pending++
	ls.Bytes += int64(len(v) + elemOverhead)
	t.dirty[rec.Lane] = true
	return d, nil
}

func (q *Queue) logRetried(d DeadLetter) {
	q.log.Info("dead letter retried: back in its lane", "id", d.ID, "seq", d.Record.Seq, "lane", d.LaneName(),
		"key", d.Record.Key, "reason", d.Reason)
}

// DropDeadLetter deletes a dead letter for good; it is counted as dropped in
// its lane and logged.
func (q *Queue) DropDeadLetter(ctx context.Context, id uint64) error {
	var d DeadLetter
	fn := func(t *txn) error {
		var err error
		d, err = t.dropDeadLetter(id)
		return err
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: 1}); err != nil {
		return fmt.Errorf("drop dead letter: %w", err)
	}
	q.logDropped(d)
	return nil
}

// DropDeadLetters drops the dead letters ids (as DropDeadLetter) in one
// transaction: all of them or, when it fails, none. Those no longer there
// are left out; done are the ids dropped.
func (q *Queue) DropDeadLetters(ctx context.Context, ids []uint64) (done []uint64, err error) {
	return q.deadLettersAsOne(ctx, "drop", ids, nil, (*txn).dropDeadLetter, q.logDropped)
}

// dropDeadLetter deletes dead letter id (see DropDeadLetter).
func (t *txn) dropDeadLetter(id uint64) (DeadLetter, error) {
	d, err := t.takeDeadLetter(id)
	if err != nil {
		return d, err
	}
	// An operator's decision, not a loss to the quota: counted apart
	// from the lanes' Dropped (the figure to alert on).
	t.w.deadDropped++
	if d.laneUnknown {
		t.w.damagedDropped++
	}
	return d, nil
}

func (q *Queue) logDropped(d DeadLetter) {
	q.log.Warn("dead letter dropped", "id", d.ID, "seq", d.Record.Seq, "lane", d.LaneName(),
		"key", d.Record.Key, "damaged", d.Damaged, "reason", d.Reason)
}
