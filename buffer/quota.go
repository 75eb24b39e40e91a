package buffer

import "errors"

// makeRoom frees logical bytes until need more fit in the budget, in the
// contract's order: oldest telemetry, then merging consecutive count records
// of one key, then oldest events (only when the incoming records are counts
// or events). Counts are never dropped. Telemetry and merges free a little
// more than asked (1/64 of the budget) so that a steady overload logs and
// scans in bursts instead of on every append.
func (q *Queue) makeRoom(t *txn, need int64, incoming Lane) (bool, error) {
	budget := q.budget.Load()
	if budget == 0 {
		return true, nil
	}
	over := func() int64 { return t.w.used() + need - budget }
	slack := budget / 64
	if over() <= 0 {
		return true, nil
	}
	// Each walk sets aside a damaged record it meets (repairing) rather
	// than fail every append for good.
	if err := t.repairing(LaneTelemetry, func() error { return q.dropOldest(t, LaneTelemetry, over()+slack) }); err != nil {
		return false, err
	}
	if over() <= 0 {
		return true, nil
	}
	if q.opts.Merge != nil {
		if err := t.repairing(LaneCounts, func() error { return q.mergeCounts(t, over()+slack) }); err != nil {
			return false, err
		}
		if over() <= 0 {
			return true, nil
		}
	}
	if incoming == LaneTelemetry {
		return false, nil
	}
	if inFlight, err := q.countsInFlight(t); err != nil {
		return false, err
	} else if inFlight {
		// Count records a forwarding round holds cannot be merged now;
		// once it acknowledges them or gives up, they free room or can be
		// merged. Until then appends wait (backpressure) rather than drop
		// downtime that merging would have spared.
		return false, nil
	}
	if err := t.repairing(LaneEvents, func() error { return q.dropOldest(t, LaneEvents, over()) }); err != nil {
		return false, err
	}
	return over() <= 0, nil
}

// dropOldest deletes the lane's oldest records until want bytes are freed.
// Events already handed out by Read/Next (Seq at or below the read mark),
// or claimed (Claim), are left alone: the forwarder is booking them, and dropped they were
// booked all the same while counted and logged as lost — a person told of
// lost stops would enter them again by hand (the verification probe: 200
// a drop counted twice). Telemetry has no such forwarder.
func (q *Queue) dropOldest(t *txn, lane Lane, want int64) error {
	var mark uint64
	if lane == LaneEvents {
		mark = q.heldMark(t, lane)
	}
	var seqs []uint64
	var planned int64
	err := walkLane(t.lanes[lane], mark, func(r laneRec) error {
		if planned >= want {
			return errStop
		}
		if r.bad != nil {
			return r.bad
		}
		if lane == LaneEvents && q.inFlight(lane, mark, r.seq) {
			return nil // claimed (Claim)
		}
		seqs = append(seqs, r.seq)
		planned += int64(len(r.v) + elemOverhead)
		return nil
	})
	if err != nil {
		return err
	}
	return t.remove(lane, seqs, func(v []byte) {
		t.w.lanes[lane].Dropped++
		t.w.burstDropped[lane]++
		if lane == LaneEvents {
			t.w.noteDroppedEvent(v, q.opts.EventTime)
		}
	})
}

// heldMark returns lane's read mark — the highest Seq Read/Next handed out
// — and keeps it as it is until t is committed: readers wait on markMu
// (taken once a transaction), so that what t drops, merges or moves past
// the mark cannot be handed out meanwhile.
func (q *Queue) heldMark(t *txn, lane Lane) uint64 {
	if !t.merging {
		q.markMu.Lock() // released when t is committed
		t.merging = true
	}
	return q.readMark[lane].Load()
}

// mergeHead is the surviving record of one key during a merge pass.
type mergeHead struct {
	rec      Record
	oldSize  int64 // stored size before the pass
	size     int64 // size after folding what it absorbed
	absorbed []uint64
	freed    int64 // stored size of the absorbed records
}

// mergeCounts folds consecutive count records of the same key into the
// earliest of them (keeping its Seq and Time), oldest first, until want bytes
// are planned free. Records already handed out by Read/Next (Seq at or below
// the read mark) are left alone: the forwarder may be about to ack them, and
// an ack of a merged record must not delete counts it never delivered.
func (q *Queue) mergeCounts(t *txn, want int64) error {
	mark := q.heldMark(t, LaneCounts)
	if mark == ^uint64(0) {
		return nil
	}
	b := t.lanes[LaneCounts]
	heads := make(map[string]*mergeHead)
	var order []*mergeHead
	var planned int64
	var segs []uint64 // segments holding records of the plan, in order
	err := walkLane(b, mark, func(r laneRec) error {
		if planned >= want {
			return errStop
		}
		if r.bad != nil {
			return r.bad
		}
		rec, err := decodeRecord(r.v)
		if err != nil {
			return err
		}
		if r.seg != 0 && (len(segs) == 0 || segs[len(segs)-1] != r.seg) {
			segs = append(segs, r.seg)
		}
		size := int64(len(r.v) + elemOverhead)
		h := heads[rec.Key]
		if h == nil {
			heads[rec.Key] = &mergeHead{rec: rec, oldSize: size, size: size}
			return nil
		}
		m, err := q.opts.Merge(h.rec, rec)
		if err != nil {
			if !errors.Is(err, ErrKeepBoth) {
				q.log.Warn("buffer: merging count records failed; keeping both", "err", err, "key", rec.Key, "seq", rec.Seq)
			}
			heads[rec.Key] = &mergeHead{rec: rec, oldSize: size, size: size}
			return nil
		}
		m.Seq, m.Lane, m.Key = h.rec.Seq, LaneCounts, h.rec.Key
		if m.Time.IsZero() {
			m.Time = h.rec.Time
		}
		newSize := int64(encodedSize(m) + elemOverhead)
		planned += size + h.size - newSize
		if len(h.absorbed) == 0 {
			order = append(order, h)
		}
		h.rec, h.size = m, newSize
		h.absorbed = append(h.absorbed, rec.Seq)
		h.freed += size
		return nil
	})
	if err != nil {
		return err
	}
	// Merging rewrites single records: turn the segments concerned into
	// plain records first.
	for _, s := range segs {
		if err := explodeAround(b, s, t.arena); err != nil {
			return err
		}
	}
	ls := &t.w.lanes[LaneCounts]
	for _, h := range order {
		if err := b.Put(seqKey(h.rec.Seq), encodeRecord(nil, h.rec)); err != nil {
			return err
		}
		for _, seq := range h.absorbed {
			if err := b.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		ls.Bytes += h.size - h.oldSize - h.freed
		ls.Pending -= len(h.absorbed)
		t.w.merged += uint64(len(h.absorbed))
		t.w.burstMerged += uint64(len(h.absorbed))
		t.dirty[LaneCounts] = true
	}
	return nil
}

// countsInFlight reports whether the counts lane holds records handed out
// to a reader (at or below its read mark), which merging leaves alone.
func (q *Queue) countsInFlight(t *txn) (bool, error) {
	mark := q.readMark[LaneCounts].Load()
	if mark == 0 {
		return false, nil
	}
	in := false
	err := walkLane(t.lanes[LaneCounts], 0, func(r laneRec) error {
		in = r.seq <= mark
		return errStop // the first record tells
	})
	return in, err
}
