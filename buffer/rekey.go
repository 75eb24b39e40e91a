package buffer

import (
	"context"
	"fmt"
)

// Rekey gives the pending records of lane whose key is from the key to,
// keeping their Seq, time and data, in one durable transaction: a machine
// renamed in the configuration takes over what its old name buffered.
// Records handed out to a reader (at or below its read mark) stay as they
// are; when none stayed, the meta entries whenAll are written in the same
// transaction. It returns how many records it rekeyed and how many of
// from's stayed.
func (q *Queue) Rekey(ctx context.Context, lane Lane, from, to string, whenAll ...KV) (moved, left int, _ error) {
	if lane >= NumLanes {
		return 0, 0, fmt.Errorf("rekey: unknown lane %d", lane)
	}
	if from == to || to == "" {
		return 0, 0, fmt.Errorf("rekey: %q to %q", from, to)
	}
	if err := validateMeta(whenAll); err != nil {
		return 0, 0, fmt.Errorf("rekey: %w", err)
	}
	fn := func(t *txn) error {
		moved, left = 0, 0 // a retried transaction runs this again
		mark := q.heldMark(t, lane)
		if err := t.flushPending(); err != nil { // what this transaction appended so far is seen
			return err
		}
		var recs []Record
		// Damage met in the lane is set aside first (repairing): a segment
		// before a moved record is exploded, and one damaged failed every
		// try (the second damage review: nothing moved, and no read came
		// to repair it first).
		err := t.repairing(lane, func() error {
			recs, left = recs[:0], 0
			return walkLane(t.lanes[lane], 0, func(r laneRec) error {
				if r.bad != nil {
					return r.bad
				}
				rec, err := decodeRecord(r.v)
				if err != nil || rec.Key != from {
					return nil
				}
				rec.Lane = lane
				if q.inFlight(lane, mark, rec.Seq) {
					left++
					return nil
				}
				recs = append(recs, rec)
				return nil
			})
		})
		if err != nil {
			return err
		}
		ls := &t.w.lanes[lane]
		for _, rec := range recs {
			if _, err := t.deleteRecord(lane, rec.Seq); err != nil {
				return err
			}
			rec.Key = to
			v := encodeRecord(nil, rec)
			// Keep the invariant of segments: no plain key inside one's range.
			if err := explodeAround(t.lanes[lane], rec.Seq, t.arena); err != nil {
				return err
			}
			if err := t.lanes[lane].Put(seqKey(rec.Seq), v); err != nil {
				return err
			}
			ls.Pending++
			ls.Bytes += int64(len(v) + elemOverhead)
			t.dirty[lane] = true
		}
		moved = len(recs)
		if left > 0 {
			return nil
		}
		return putMeta(t, whenAll)
	}
	if err := q.submit(ctx, &request{fn: fn, nrec: 1 + len(whenAll)}); err != nil {
		return 0, 0, fmt.Errorf("rekey: %w", err)
	}
	return moved, left, nil
}
