package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo"
)

// woState is the durable attribution of a machine's good counts to one work
// order: Odoo's quantity when plantedge first attributed counts to it
// (Baseline), what plantedge has acknowledged since (Counted), and the
// absolute value Odoo last confirmed (Written). The value written is always
// Baseline+Counted+pending, so a repeated write is harmless; when Written
// falls behind Baseline+Counted (a quota merge folded a newer record into
// an acknowledged one) the next round writes again.
type woState struct {
	ID       int64   `json:"id"`
	Name     string  `json:"name"`
	MO       int64   `json:"mo,omitempty"` // its manufacturing order
	Baseline float64 `json:"baseline"`
	Counted  float64 `json:"counted"`
	Written  float64 `json:"written"`
	// Field is the work-order field Written went to (qty_producing on
	// 17/18, qty_produced on 19+; empty before the first write, and in
	// files from versions that did not store it): after Odoo is upgraded
	// across 19, the count is written again to the new field.
	Field string `json:"field,omitempty"`
	// InFlight is a quantity write sent but not yet settled by the
	// acknowledgement of its records. Should the work order change before
	// that (a timeout, a crash), the old one is read back to learn whether
	// the write landed, so its records are never counted for both.
	InFlight *inflightWrite `json:"inflight,omitempty"`
	// Prev is the work order the machine counted on before this one, by
	// id: one it comes back to (resumed after a rush order) counts on from
	// its quantity in Odoo — on 17/18 an order that had made its whole
	// quantity reads as one just started (qty_producing = qty_remaining)
	// and was counted from 0 (the second attribution probe: 2 for 32).
	Prev int64 `json:"prev,omitempty"`
	// Zeroed says why Baseline is 0 where Odoo showed ZeroedFrom when
	// counting began on it (Odoo 17/18): "start" (the quantity starting it
	// set) or "next_op" (the MO's operation before's count). accept-qty
	// does not take that quantity for a correction (another one it does).
	Zeroed     string  `json:"zeroed,omitempty"`
	ZeroedFrom float64 `json:"zeroed_from,omitempty"`
	// Replaced is the last quantity edited in Odoo that plantedge's
	// write replaced: accept-qty takes it back within replacedHold (on a
	// running machine the next round writes over an edit, before a person
	// can run accept-qty: the work-order probe).
	Replaced *replacedEdit `json:"replaced,omitempty"`
	// Sum is the CRC-32C of the rest as stored (MarshalJSON): bbolt checks
	// its pages, not the values in them, and one flipped bit that leaves
	// the JSON readable would change a count, an in-flight mark or the
	// work order's id unseen (the bitrot probes: 20 pieces never made, 50
	// booked ones written over). 0 in states of older versions, which go
	// unchecked.
	Sum uint32 `json:"sum,omitempty"`
}

// finishedOrderReason starts the reason of a dead letter of pieces made on
// a work order finished before they reached Odoo: retried, they would be
// written to the order in progress (they go back behind its newer pieces,
// where no cut finds them: the review), so a retry keeps them.
const finishedOrderReason = "made on a finished work order: "

// cancelledOrderReason starts the reason of a dead letter of pieces (or
// scrap) made on a work order cancelled before they reached Odoo: kept by
// a retry like those of a finished order (endedOrder) — retried, they
// would be booked on the order in progress, another product's maybe (the
// review: a retried scrap was).
const cancelledOrderReason = "made on a cancelled work order: "

// orderName names a work order with its manufacturing order ("Pressing of
// WH/MO/00001-002"): Odoo 17/18 name a work order by its operation, the
// same on every order, and a backorder's are copies with the original's
// name (the operators probe: "go to WO press-1 … which is done … not WO
// press-1's").
func orderName(w *odoo.Workorder) string {
	if w.ProductionName == "" {
		return w.Name
	}
	return w.Name + " of " + w.ProductionName
}

// woStateFields is woState without its MarshalJSON.
type woStateFields woState

func (st *woStateFields) sum() *uint32 { return &st.Sum }

// MarshalJSON stores st with its checksum (Sum).
func (st woState) MarshalJSON() ([]byte, error) { return sealJSON(woStateFields(st)), nil }

// decodeWOState reads a stored work-order state: an error for one that does
// not read, or whose checksum does not hold (one of an older version has
// none).
func decodeWOState(b []byte) (woState, error) {
	st, err := openJSON[woStateFields](b)
	return woState(st), err
}

// replacedEdit is a quantity Odoo showed (Qty) where plantedge had
// written Over, Counted pieces counted on the order then, seen At.
type replacedEdit struct {
	Qty     float64   `json:"qty"`
	Over    float64   `json:"over"`
	Counted float64   `json:"counted"`
	At      time.Time `json:"at"`
}

// replacedHold is how long accept-qty takes back an edit plantedge wrote
// over.
const replacedHold = time.Hour

// inflightWrite is an absolute write and the last good-count record it holds.
type inflightWrite struct {
	Target float64 `json:"target"`
	MaxSeq uint64  `json:"max_seq"`
}

func woMetaKey(machine string) string { return "wo/" + machine }

// woStateKV is the meta entry that stores machine's work-order state st.
func woStateKV(machine string, st woState) buffer.KV {
	return buffer.KV{Key: woMetaKey(machine), Value: mustJSON(st)}
}

// moved reports whether the count was written to another field than field
// (Odoo upgraded, or restored, across 19).
func (st *woState) moved(field string) bool { return st.Field != "" && st.Field != field }

// fieldUnknown reports whether a count was written to a field not kept (by
// a version that did not store it) while Odoo now keeps the quantity in
// 19's qty_produced: it may be in 17/18's qty_producing. If Odoo does not
// hold it in field, it is written there.
func (st *woState) fieldUnknown(field string) bool {
	return st.Field == "" && st.Written != st.Baseline && field == "qty_produced"
}

// damagedWOMsg is what the log says of a machine's stored work-order state
// that cannot be read.
const damagedWOMsg = "the buffer file's work-order state of this machine cannot be read (damaged on the disk?): set aside; " +
	"its work order is taken anew from Odoo, its quantity there as the baseline (a quantity write in doubt, if there was one, may be counted twice)"

// loadWOState reads a machine's stored work-order state; nil if it has
// none, or one that cannot be read (bit rot: said, and taken as none — it
// must not stop every machine's forwarding).
func (a *Agent) loadWOState(machine string) (*woState, error) {
	b, err := a.buf.Meta(woMetaKey(machine))
	if err != nil || b == nil {
		return nil, err
	}
	st, err := decodeWOState(b)
	if err != nil {
		a.eventLog.log("damaged wo "+machine, a.log, slog.LevelError, damagedWOMsg, "machine", machine, "err", err)
		return nil, nil
	}
	return &st, nil
}

// pendingKey is the aggregate of one count key's pending records: the
// forwarder keeps per key only this, not the records, so a backlog of
// millions of values costs a few bytes per machine.
type pendingKey struct {
	sum            float64
	n              int
	minSeq, maxSeq uint64
	first          int64 // source time (ms) of the oldest pending piece
	last           int64 // and of the newest
	// buffered is when the oldest record was buffered, by this box's
	// clock (zero: none).
	buffered time.Time
	// lag is how late the latest of them came (see offsets).
	lag time.Duration
}

// add takes in count record r, c decoded.
func (p *pendingKey) add(r buffer.Record, c countRecord) {
	p.sum = decimal.Add(p.sum, c.Delta)
	p.n++
	if p.minSeq == 0 {
		p.minSeq = r.Seq
	}
	p.maxSeq = r.Seq
	if p.buffered.IsZero() || r.Time.Before(p.buffered) {
		p.buffered = r.Time
	}
	if p.first == 0 || c.First < p.first {
		p.first = c.First
	}
	p.last = max(p.last, c.Last)
}

// aggregateCounts sums the whole counts lane per key. It marks the records
// in flight: the sums are what this round's calls send, so the quota merge
// must not fold a newer record into one of them before the acknowledgement
// pass deletes them (the pieces of the newer one would go with it). A
// record it cannot decode goes to the dead letters (once, with the reason)
// rather than stay in the lane for every round to trip over.
func (f *forwarder) aggregateCounts(ctx context.Context, cfg *config.Config) (map[string]*pendingKey, error) {
	out := map[string]*pendingKey{}
	type undecodable struct {
		rec    buffer.Record
		reason string
	}
	var bad []undecodable
	expired := map[string]string{} // machine -> unmappedExpired, once per round
	err := f.scanCounts(true, 0, func(recs []buffer.Record) error {
		for _, r := range recs {
			c, err := decodeCount(r)
			if err != nil {
				bad = append(bad, undecodable{r, "undecodable count record: " + err.Error()})
				continue
			}
			m, _ := splitKey(r.Key)
			reason, ok := expired[m]
			if !ok {
				reason = f.unmappedExpired(cfg, m)
				expired[m] = reason
			}
			// (A record an Odoo call in flight covers waits for the
			// machine: moved, a retry would book it twice.)
			if reason != "" && len(bad) < maxUnmappedPerRound && !f.a.coveredInFlight(r) {
				bad = append(bad, undecodable{r, reason})
				continue
			}
			p := out[r.Key]
			if p == nil {
				p = &pendingKey{}
				out[r.Key] = p
			}
			p.add(r, c)
			p.lag = max(p.lag, f.a.srcOff.lag(m, c.Off))
		}
		return nil
	})
	for _, b := range bad {
		if err != nil {
			break
		}
		err = f.moveToDeadLetters(ctx, b.rec, "count record moved to dead letters", b.reason)
	}
	return out, err
}

// takeOverRenamed gives a machine renamed in the configuration what its old
// id had of a counter (the alias meta entries endOrphanedStops writes when
// the new id adopts the old one's counter), following a chain of renames to
// the id configured now: its pending count records (rekeyed, same Seq) and,
// in the same transaction, the forwarder's state of that counter — for good
// counts the work-order state (what was written, a write in flight), for
// scrap the outbox, carry and drafts — so the new id goes on exactly where
// the old one stopped: a write or booking left in doubt is settled under
// the new id, by the same external id, and an id renamed back does not
// write its stale quantity over what the other wrote (the self-probe: 9
// instead of 19). The alias goes in that transaction. One whose old id is
// configured again (the rename undone) goes at once: what that id has is
// its own. It runs at the start of a round, when no record is read out.
func (f *forwarder) takeOverRenamed(ctx context.Context, cfg *config.Config) error {
	aliases := map[string]string{}
	if err := f.a.buf.MetaPrefix(aliasPrefix, func(k string, v []byte) error {
		aliases[strings.TrimPrefix(k, aliasPrefix)] = string(v)
		return nil
	}); err != nil {
		return err
	}
	for from, to := range aliases {
		if m, _ := splitKey(from); findMachine(cfg, m) != nil {
			if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: aliasMetaKey(from)}); err != nil {
				return err
			}
			continue
		}
		for range len(aliases) { // renamed again since
			m, _ := splitKey(to)
			next, ok := aliases[to]
			if findMachine(cfg, m) != nil || !ok {
				break
			}
			to = next
		}
		if m, _ := splitKey(to); findMachine(cfg, m) == nil || to == from {
			continue // the new id is gone too: its records wait like any removed machine's
		}
		moves, err := f.counterStateMoves(from, to)
		if err != nil {
			return err
		}
		n, left, err := f.a.buf.Rekey(ctx, buffer.LaneCounts, from, to, append(moves, buffer.KV{Key: aliasMetaKey(from)})...)
		if err != nil {
			return err
		}
		if left > 0 {
			continue // records read out (not expected at a round's start): the next round
		}
		if v, ok := f.a.inFlight.LoadAndDelete(from); ok {
			f.a.inFlight.Store(to, v)
		}
		om, _ := splitKey(from)
		nm, sig := splitKey(to)
		if n > 0 || len(moves) > 0 {
			f.a.forgetPendingCounts()
			f.a.log.Info("a renamed machine takes over what its old id had of a counter: its buffered records and where its Odoo writes stand",
				"machine", nm, "was", om, "signal", sig, "records", n)
		}
	}
	return nil
}

// counterStateMoves are the meta entries that move the forwarder's state of
// count key from to count key to (see takeOverRenamed): each entry the old
// id has is written under the new id, over what that one has (an id used
// before: its state is of then, when it was renamed away — the self-probe
// saw an id renamed back keep its stale work-order state), and deleted
// under the old; an entry the old id lacks leaves the new id's alone.
func (f *forwarder) counterStateMoves(from, to string) ([]buffer.KV, error) {
	fm, sig := splitKey(from)
	tm, _ := splitKey(to)
	var out []buffer.KV
	move := func(fromKey, toKey string) error {
		v, err := f.a.buf.Meta(fromKey)
		if err != nil || v == nil {
			return err
		}
		out = append(out, buffer.KV{Key: toKey, Value: bytes.Clone(v)}, buffer.KV{Key: fromKey})
		return nil
	}
	switch sig {
	case sigGood:
		for _, k := range []func(string) string{woMetaKey, unattributedMetaKey} {
			if err := move(k(fm), k(tm)); err != nil {
				return nil, err
			}
		}
	case sigScrap:
		for _, k := range []func(string) string{scrapMetaKey, scrapCarryKey} {
			if err := move(k(fm), k(tm)); err != nil {
				return nil, err
			}
		}
		var drafts []string
		prefix := scrapDraftKey(fm, "")
		if err := f.a.buf.MetaPrefix(prefix, func(k string, _ []byte) error {
			drafts = append(drafts, strings.TrimPrefix(k, prefix))
			return nil
		}); err != nil {
			return nil, err
		}
		for _, x := range drafts {
			if err := move(scrapDraftKey(fm, x), scrapDraftKey(tm, x)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// errPrefixEnd ends countPrefix's scan.
var errPrefixEnd = errors.New("end of prefix")

// countPrefix sums the leading records of a count key, up to seq upTo, made
// before t (the newest piece of each, Last, before it): the pieces of a
// backlog made before a work order started. It reads without marking.
func (f *forwarder) countPrefix(key string, t time.Time, upTo uint64) (pendingKey, error) {
	var p pendingKey
	before := t.UnixMilli()
	err := f.scanCounts(false, upTo, func(recs []buffer.Record) error {
		for _, r := range recs {
			if r.Key != key {
				continue
			}
			c, err := decodeCount(r)
			if err != nil || c.Last >= before {
				return errPrefixEnd
			}
			p.add(r, c)
		}
		return nil
	})
	if errors.Is(err, errPrefixEnd) {
		err = nil
	}
	return p, err
}

// unmappedHold is how long the count records of a machine gone from the
// configuration wait for it to come back (a rename undone, a machine
// taken out by mistake) before they go to the dead letters — where they
// can be retried once it is back, or dropped — instead of holding the
// oldest-record age up for good. maxUnmappedPerRound bounds the records
// moved in one round (each move is a commit).
const (
	unmappedHold        = time.Hour
	maxUnmappedPerRound = 1000
)

// unmappedExpired returns the dead-letter reason for a record of machine
// id when id has been gone from cfg for the hold, "" otherwise.
func (f *forwarder) unmappedExpired(cfg *config.Config, id string) string {
	if findMachine(cfg, id) != nil {
		delete(f.unmapped, id)
		return ""
	}
	since, ok := f.unmapped[id]
	if !ok {
		f.unmapped[id] = time.Now()
		return ""
	}
	hold := cmp.Or(f.a.opts.UnmappedHold, unmappedHold)
	if time.Since(since) < hold {
		return ""
	}
	return fmt.Sprintf("machine %s is not in the configuration (for %s now): add it back and retry this, or drop it",
		id, time.Since(since).Round(time.Second))
}

// unmappedReason says that a dead letter's reason is unmappedExpired's.
func unmappedReason(reason string) bool {
	return strings.HasPrefix(reason, "machine ") && strings.Contains(reason, " is not in the configuration (for ")
}

// scanCounts walks the counts lane in chunks, up to seq upTo (0: all);
// with mark it reads (marking records in flight, for acknowledging them),
// otherwise it peeks.
func (f *forwarder) scanCounts(mark bool, upTo uint64, fn func([]buffer.Record) error) error {
	var after uint64
	for {
		var recs []buffer.Record
		var err error
		if mark {
			recs, err = f.a.buf.Read(buffer.LaneCounts, after, scanChunk)
		} else {
			recs, err = f.a.buf.Peek(buffer.LaneCounts, after, scanChunk)
		}
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		if upTo > 0 {
			for i, r := range recs {
				if r.Seq > upTo {
					recs = recs[:i]
					break
				}
			}
		}
		if len(recs) == 0 {
			return nil
		}
		if err := fn(recs); err != nil {
			return err
		}
		// Don't let a scan of a large backlog show the whole buffer file as
		// resident memory: give the pages read back to the page cache.
		_ = f.a.buf.DropMappedPages()
		if len(recs) < scanChunk {
			return nil
		}
		after = recs[len(recs)-1].Seq
	}
}

// noteAttribution keeps in the buffer file whether the machine's counts
// wait for a work order (unattributedMetaKey), so that status shows them as
// unattributed while the agent is stopped too; written on a change only.
func (f *forwarder) noteAttribution(ctx context.Context, machine string, none bool) error {
	if was, ok := f.noWorkorder[machine]; ok && was == none {
		return nil
	}
	kv := buffer.KV{Key: unattributedMetaKey(machine)}
	if none {
		kv.Value = []byte("1")
	}
	if err := f.a.buf.PutMeta(ctx, kv); err != nil {
		return err
	}
	f.noWorkorder[machine] = none
	return nil
}

func unattributedMetaKey(machine string) string { return "unattributed/" + machine }

// countWrite is a machine's quantity write planned by planCounts: its
// in-flight mark (in st) is stored for all of a round's writes in one
// commit before the first is sent (sendCounts), not a commit each (the
// wear probe: the forwarder's commits were 62 % of what a typical plant
// wrote to the disk).
type countWrite struct {
	machine     string
	wo          *odoo.Workorder
	st          woState
	prev        *inflightWrite // an earlier attempt Odoo did not show at the lookup
	target      float64
	good, scrap *pendingKey
}

// unplan lets go of the holds planCounts took for writes not sent: a mark
// stored before keeps its own. It returns the meta entries that put back
// the marks as they were before (for writes whose marks were stored: a
// mark of a write never sent read as one in doubt — the fifth self-probe:
// status named it after a stop, and a switch logged pieces "in both").
func (f *forwarder) unplan(writes []*countWrite) []buffer.KV {
	var meta []buffer.KV
	for _, w := range writes {
		var held uint64
		if w.prev != nil {
			held = w.prev.MaxSeq
		}
		f.a.holdInFlight(countKey(w.machine, sigGood), held)
		st := w.st
		st.InFlight = w.prev
		meta = append(meta, woStateKV(w.machine, st))
	}
	return meta
}

// mark is the meta entry of the write's in-flight mark.
func (w *countWrite) mark() buffer.KV {
	return woStateKV(w.machine, w.st)
}

// planCounts coalesces a machine's pending good counts into one absolute
// quantity write on the work order in progress: it returns the write to
// make (its in-flight mark set in st, not yet stored; sendCounts makes it,
// then books pending scrap), or nil when there is none (pending scrap then
// booked already).
func (f *forwarder) planCounts(ctx context.Context, machine string, wo *odoo.Workorder, pending map[string]*pendingKey, acks *ackPlan) (*countWrite, error) {
	good := pending[countKey(machine, sigGood)]
	scrap := pending[countKey(machine, sigScrap)]
	if err := f.noteAttribution(ctx, machine, wo == nil); err != nil {
		return nil, err
	}
	if wo == nil {
		var unattributed float64
		if good != nil {
			unattributed = good.sum
		}
		f.setMachine(machine, func(ml *machineLink) { ml.Unattributed = unattributed })
		stored, err := f.a.loadWOState(machine)
		if err != nil {
			return nil, err
		}
		if _, err := f.settleInFlight(ctx, machine, nil, stored, acks); err != nil {
			return nil, err
		}
		if err := f.serveAccept(ctx, machine, nil, stored, unattributed); err != nil {
			return nil, err
		}
		// Counts are held, not dropped, until a work order is in progress.
		// A scrap booking already decided still completes (it names its order).
		return nil, f.forwardScrap(ctx, machine, nil, scrap, acks)
	}
	f.setMachine(machine, func(ml *machineLink) { ml.Unattributed = 0 })
	stored, err := f.a.loadWOState(machine)
	if err != nil {
		return nil, err
	}
	if err := f.precisionLowered(ctx, machine, wo, stored); err != nil {
		return nil, err
	}
	if settled, err := f.settleInFlight(ctx, machine, wo, stored, acks); err != nil || settled {
		// A landed write to the previous work order was acknowledged for it:
		// the remaining records go to wo next round.
		return nil, err
	}
	if good != nil {
		err = f.serveAccept(ctx, machine, wo, stored, good.sum)
	} else {
		err = f.serveAccept(ctx, machine, wo, stored, 0)
	}
	if err != nil {
		return nil, err
	}
	if good != nil && good.sum != 0 {
		// A backlog's pieces go to the order they were made on, a stretch
		// a round: before, those of a finished (or paused) order raised
		// the one in progress when the link came back (the second
		// attribution probe: a rush order's pieces on the resumed order).
		earlier, pre, why, err := f.madeEarlier(ctx, machine, "pieces", wo, good)
		switch {
		case err != nil:
			return nil, err
		case earlier == nil:
		case earlier.State != "progress":
			// A finished order's quantity is what it was finished with, and
			// written to the order in progress they would count towards its
			// quantity: kept, with the reason, for a person to judge.
			one := pre.sum == 1
			made := fmt.Sprintf("%s made from %s to %s UTC %s to work order %s (%s), ",
				Pieces(pre.sum, ""), fromMS(pre.first).UTC().Format(time.DateTime), fromMS(pre.last).UTC().Format(time.DateTime),
				OneOrMore(one, "goes", "go"), orderName(earlier), why)
			they := OneOrMore(one, "it is", "they are")
			reason := fmt.Sprintf(finishedOrderReason+made+"which is %s: its quantity is what it was finished with (Odoo 19 refuses another), "+
				"and %s not %s's, in progress now; correct that order's quantity in Odoo if need be, then drop this dead letter",
				earlier.State, they, orderName(wo))
			if earlier.State == "cancel" {
				reason = fmt.Sprintf(cancelledOrderReason+made+"which was cancelled: it takes no quantity, and %s not %s's, in progress now "+
					"(another product's, maybe); book %s in Odoo by hand if need be, then drop this dead letter", they, orderName(wo), OneOrMore(one, "it", "them"))
			}
			logMsg := "pieces made on a work order finished before they reached Odoo: moved to the dead letters"
			if earlier.State == "cancel" {
				logMsg = "pieces made on a work order cancelled before they reached Odoo: moved to the dead letters"
			}
			if err := f.deadLetterKeyAs(ctx, countKey(machine, sigGood), pre.maxSeq, reason, logMsg); err != nil {
				return nil, err
			}
			return nil, f.forwardScrap(ctx, machine, wo, scrap, acks)
		default:
			f.a.log.Info("pieces "+why+": written there", "machine", machine, "workorder", earlier.Name,
				"pieces", num(pre.sum), "made_from", fromMS(pre.first), "made_up_to", fromMS(pre.last), "in_progress_now", wo.Name)
			// This round writes that stretch; the rest, and the scrap, go
			// in the next rounds.
			wo, good, scrap = earlier, &pre, nil
		}
	}
	st, err := f.woState(ctx, machine, wo, stored)
	if err != nil {
		return nil, err
	}
	var sum float64
	if good != nil {
		sum = good.sum
	}
	field := f.client.ProducedField()
	moved := st.moved(field) || // Odoo upgraded (or restored) across 19
		st.fieldUnknown(field) && !f.sameQty(f.client.ProducedQty(*wo), st.Written)
	f.noteLateOrEdited(machine, wo, stored, &st, good, moved)
	target := f.client.RoundQty(decimal.Add(decimal.Add(st.Baseline, st.Counted), sum))
	rewrite := f.rewrite[machine] && stored != nil && stored.ID == wo.ID && f.client.RoundQty(f.client.ProducedQty(*wo)) != target
	if !rewrite {
		delete(f.rewrite, machine)
	}
	if sum == 0 && f.sameQty(target, st.Written) && !moved && !rewrite {
		return nil, f.forwardScrap(ctx, machine, wo, scrap, acks)
	}
	w := &countWrite{machine: machine, wo: wo, prev: st.InFlight, target: target, good: good, scrap: scrap}
	st.InFlight = &inflightWrite{Target: target}
	if good != nil {
		st.InFlight.MaxSeq = good.maxSeq
	}
	w.st = st
	f.a.holdInFlight(countKey(machine, sigGood), st.InFlight.MaxSeq)
	return w, nil
}

// sendCounts makes a planned quantity write, its in-flight mark stored,
// then books pending scrap; what Odoo confirmed goes into acks.
func (f *forwarder) sendCounts(ctx context.Context, w *countWrite, acks *ackPlan) error {
	machine, wo, st, prev, target, good, scrap := w.machine, w.wo, w.st, w.prev, w.target, w.good, w.scrap
	err := f.call(ctx, "set_produced_qty", func(ctx context.Context) error {
		return f.client.SetProducedQty(ctx, wo.ID, target)
	})
	if errors.Is(err, errStopping) { // not sent
		acks.extra = append(acks.extra, f.unplan([]*countWrite{w})...)
		return err
	}
	switch {
	case err == nil:
		st.Written, st.Field = target, f.client.ProducedField()
		acks.wo[machine] = &st
		delete(f.rewrite, machine)
		if good != nil {
			acks.add(countKey(machine, sigGood), good.maxSeq)
			f.a.metrics.forwarded.WithLabelValues("good_count").Add(good.sum)
		}
	case odoo.IsAuth(err):
		return err
	case odoo.IsPermanent(err):
		var oe *odoo.Error
		if errors.As(err, &oe) && oe.Missing() {
			// The work order vanished: look it up again next round.
			f.a.log.Warn("work order missing; re-resolving", "machine", machine, "workorder", wo.Name)
			return nil
		}
		// Finished or cancelled between the lookup and the write (Odoo 19
		// refuses qty_produced then): not the records' fault. They stay
		// for the work order in progress next round.
		now, rerr := f.readWorkorder(ctx, wo.ID)
		if rerr == nil && now.State != wo.State && (now.State == "done" || now.State == "cancel") {
			// An earlier attempt whose answer was lost may have landed
			// after the lookup and before the order was finished: its
			// records are that order's, the rest go to the next one.
			switch got := f.client.RoundQty(f.client.ProducedQty(now)); {
			case got == target:
				f.landed(machine, &st, st.InFlight, acks)
				return nil
			case prev != nil && f.sameQty(got, prev.Target):
				st.InFlight = prev
				f.landed(machine, &st, prev, acks)
				return nil
			}
			f.a.log.Info("work order finished while its quantity was written; its counts go to the next one",
				"machine", machine, "workorder", wo.Name, "state", now.State)
			return f.clearInFlight(ctx, machine, &st) // refused: nothing landed
		}
		if good != nil {
			reason := fmt.Sprintf("set produced quantity %v on %s: %v", target, wo.Name, err)
			if err := f.deadLetterKey(ctx, countKey(machine, sigGood), good.maxSeq, reason); err != nil {
				return err
			}
		}
		if err := f.clearInFlight(ctx, machine, &st); err != nil { // refused: nothing landed
			return err
		}
	default:
		return err
	}
	return f.forwardScrap(ctx, machine, wo, scrap, acks)
}

// warnProducing says what Odoo 17/18 do with the quantities written to
// qty_producing that the agent cannot change:
//   - machines counting into work orders of one manufacturing order:
//     qty_producing is the order's, so the last write wins (only the
//     machine of the order's last operation should count good pieces
//     there; Odoo 19's qty_produced is per work order);
//   - a work order of a product tracked by serial number: Odoo keeps its
//     quantity producing at 1 (produced one unit at a time), whatever is
//     written, and the write succeeds (the ODOO.md audit: the pieces were
//     shown as written, or as an edit in Odoo to write over).
func (f *forwarder) warnProducing(cfg *config.Config) {
	if f.client.Major() >= 19 {
		return
	}
	links := f.machineSnapshot()
	byMO := map[int64][]string{}
	for _, m := range cfg.Machines { // configuration order
		l := links[m.ID]
		if m.GoodCount == nil || l.ProductionID == 0 {
			continue
		}
		byMO[l.ProductionID] = append(byMO[l.ProductionID], m.ID)
		if l.SerialProducing {
			msg := fmt.Sprintf("work order %s is of a product tracked by serial number: Odoo %d keeps its quantity producing at 1 (one unit at a time), "+
				"so the pieces counted are not in Odoo — produce it unit by unit in Odoo (each with its serial number), or count on Odoo 19 (qty_produced)",
				l.WorkOrder, f.client.Major())
			f.setMachine(m.ID, func(ml *machineLink) { ml.Error = msg })
			f.a.eventLog.log("serial "+m.ID, f.a.log, slog.LevelWarn,
				"the work order's product is tracked by serial number: Odoo 17/18 keep its quantity producing at 1, so the pieces counted are not in Odoo",
				"machine", m.ID, "workorder", l.WorkOrder)
		}
	}
	for _, ms := range byMO {
		if len(ms) < 2 {
			continue
		}
		mo := links[ms[0]].Production
		msg := fmt.Sprintf("shares %s's qty_producing with %s: on Odoo 17/18 it is one quantity per manufacturing order, so their counts overwrite each other; count good pieces only on the machine of the order's last operation",
			mo, strings.Join(ms, ", "))
		for _, id := range ms {
			f.setMachine(id, func(ml *machineLink) { ml.Error = msg })
		}
		// Keyed by the machines, not the order: one key per order would grow.
		f.a.eventLog.log("mo/"+strings.Join(ms, ","), f.a.log, slog.LevelWarn,
			"machines count into one manufacturing order's qty_producing (Odoo 17/18)", "production", mo, "machines", ms)
	}
}

// sameQty reports whether Odoo's quantity a and b — one plantedge wrote,
// or has in flight, rounded to the decimals Odoo kept then — are the same
// as Odoo keeps quantities now: both rounded to the digits the client
// read. Its administrator may have set fewer since (read at a start, a
// reconnect, or by precisionLowered): the 1.25 written at 2 decimals is
// the 1 Odoo keeps of it at 0, which Odoo shows too once it stored the
// write after the change. Compared as written, it was taken for an edit
// in Odoo, and a write in doubt that had landed for one that had not —
// its pieces booked on the next work order a second time.
func (f *forwarder) sameQty(a, b float64) bool { return f.client.RoundQty(a) == f.client.RoundQty(b) }

// precisionLowered reads Odoo's quantity precision again when the work
// order in progress (wo, nil if none), the one the machine's state
// (stored, nil if none) names, shows what plantedge wrote there or has in
// flight rounded to fewer decimals than the client rounds to: Odoo's
// administrator set fewer while the session stood, no connect read them,
// and Odoo rounded the write. Once for a work order and quantity.
func (f *forwarder) precisionLowered(ctx context.Context, machine string, wo *odoo.Workorder, stored *woState) error {
	if wo == nil || stored == nil || stored.ID != wo.ID {
		return nil
	}
	q := f.client.RoundQty(f.client.ProducedQty(*wo))
	written := []float64{stored.Written}
	if stored.InFlight != nil {
		written = append(written, stored.InFlight.Target)
	}
	for _, w := range written {
		if f.client.RoundQty(w) == q {
			return nil // as written
		}
	}
	asked := fmt.Sprintf("%d %v", wo.ID, q)
	if f.precisionAsked[machine] == asked {
		return nil
	}
	for _, w := range written {
		for d := f.client.QtyDigits() - 1; d >= 0; d-- {
			if decimal.Round(w, d) != q {
				continue
			}
			if err := f.call(ctx, "read_precision", f.client.RefreshQtyDigits); err != nil {
				return err
			}
			if f.precisionAsked == nil {
				f.precisionAsked = map[string]string{}
			}
			f.precisionAsked[machine] = asked
			return nil
		}
	}
	return nil
}

// readWorkorder reads a work order back (a call like any other: paced,
// counted).
func (f *forwarder) readWorkorder(ctx context.Context, id int64) (wo odoo.Workorder, err error) {
	err = f.call(ctx, "read_workorder", func(ctx context.Context) error {
		wo, err = f.client.ReadWorkorder(ctx, id)
		return err
	})
	return wo, err
}

// workorderIfAny reads work order id; found is false when Odoo has none by
// that id (deleted).
func (f *forwarder) workorderIfAny(ctx context.Context, id int64) (wo odoo.Workorder, found bool, err error) {
	wo, err = f.readWorkorder(ctx, id)
	var oe *odoo.Error
	if errors.As(err, &oe) && oe.Missing() {
		return odoo.Workorder{}, false, nil
	}
	return wo, err == nil, err
}

// settleInFlight handles a quantity write that was sent but never settled:
// a timeout or a crash came between the write and the acknowledgement. If
// it landed, the records it held are acknowledged for its work order
// (settled = true); what came after them goes out next round. For the work
// order in progress (wo, nil if none) the round's lookup tells; if Odoo
// does not hold the write's quantity, the next write (absolute, holding
// every record) repeats it. Another work order (it changed since) is read
// back; if the write did not land there, the in-flight mark is cleared and
// the records go to wo.
// st is the machine's stored state (nil if none); clearing the mark
// updates it in place.
func (f *forwarder) settleInFlight(ctx context.Context, machine string, wo *odoo.Workorder, st *woState, acks *ackPlan) (settled bool, err error) {
	if st == nil || st.InFlight == nil {
		return false, nil
	}
	if wo != nil && st.ID == wo.ID {
		if !f.sameQty(f.client.ProducedQty(*wo), st.InFlight.Target) {
			return false, nil
		}
		f.landed(machine, st, st.InFlight, acks)
		return true, nil
	}
	old, err := f.readWorkorder(ctx, st.ID)
	var oe *odoo.Error
	switch {
	case err == nil && f.sameQty(f.client.ProducedQty(old), st.InFlight.Target):
		f.landed(machine, st, st.InFlight, acks)
		return true, nil
	case err == nil, errors.As(err, &oe) && oe.Missing():
		// It did not land (or the order is gone): the records are still to
		// be counted, for the work order in progress now.
	default:
		if f.woRefused && odoo.IsPermanent(err) && !odoo.IsAuth(err) {
			return false, nil // work orders may not be read now: it stays in flight
		}
		return false, err
	}
	return false, f.clearInFlight(ctx, machine, st)
}

// landed settles write w, whose answer never came but which Odoo holds: its
// records are acknowledged for st's work order.
func (f *forwarder) landed(machine string, st *woState, w *inflightWrite, acks *ackPlan) {
	f.a.log.Info("an unconfirmed quantity write had landed; its counts stay with that work order",
		"machine", machine, "workorder", st.Name, "qty", num(w.Target))
	st.Written, st.Field = w.Target, f.client.ProducedField() // the field it was read back from
	acks.wo[machine] = st
	acks.add(countKey(machine, sigGood), w.MaxSeq)
}

// clearInFlight stores st without its in-flight write: its records were
// not counted for that work order, and may be merged again.
func (f *forwarder) clearInFlight(ctx context.Context, machine string, st *woState) error {
	st.InFlight = nil
	if err := f.a.buf.PutMeta(ctx, woStateKV(machine, *st)); err != nil {
		return err
	}
	f.a.holdInFlight(countKey(machine, sigGood), 0)
	return nil
}

// woState returns the machine's attribution to wo, taking Odoo's current
// quantity as the baseline the first time counts go to this work order
// (except the quantity starting it set, see odoo.Client.StartingQty).
// stored is the machine's stored state (nil if none).
func (f *forwarder) woState(ctx context.Context, machine string, wo *odoo.Workorder, stored *woState) (woState, error) {
	var back string // the machine the work order comes back from
	if stored != nil && stored.ID == wo.ID {
		var err error
		if back, err = f.cameBack(machine, wo, stored); err != nil || back == "" {
			return *stored, err
		}
	}
	baseline, startDefault := f.client.StartingQty(*wo)
	resumed := back == "" && stored != nil && stored.ID != wo.ID && stored.Prev == wo.ID
	if back != "" || resumed {
		baseline, startDefault = f.client.RoundQty(f.client.ProducedQty(*wo)), false
	}
	// On 17/18 qty_producing is the manufacturing order's: moving on to the
	// order's next operation, it still holds the last one's count, which
	// is not this operation's.
	nextOp := f.client.Major() < 19 && back == "" && !resumed && stored != nil && stored.MO != 0 && stored.MO == wo.ProductionID
	if nextOp {
		baseline = 0
	}
	// Written is what the next write compares with: until counts come, the
	// start default is left in place (on 17/18 Odoo ignores a write of 0).
	st := woState{ID: wo.ID, Name: wo.Name, MO: wo.ProductionID, Baseline: baseline, Written: baseline}
	if stored != nil && stored.ID != wo.ID {
		st.Prev = stored.ID
	}
	switch odooQty := f.client.RoundQty(f.client.ProducedQty(*wo)); {
	case nextOp && odooQty != 0:
		st.Zeroed, st.ZeroedFrom = "next_op", odooQty
	case startDefault:
		st.Zeroed, st.ZeroedFrom = "start", odooQty
	}
	if err := f.a.buf.PutMeta(ctx, woStateKV(machine, st)); err != nil {
		return st, err
	}
	if back != "" {
		f.a.log.Info("the work order came back to this machine from another, which counted on it meanwhile: counting on from its quantity in Odoo",
			"machine", machine, "workorder", wo.Name, "from", back, "odoo_qty", num(baseline), "written_here", num(stored.Written))
	} else if resumed {
		f.a.log.Info("attributing counts again to the work order this machine counted on before (resumed): counting on from its quantity in Odoo",
			"machine", machine, "workorder", wo.Name, "odoo_qty", num(baseline))
	} else if nextOp {
		f.a.log.Info("attributing counts to the next operation of the same manufacturing order; its quantity is the last operation's, counting from 0",
			"machine", machine, "workorder", wo.Name, "odoo_qty", num(f.client.ProducedQty(*wo)))
	} else if startDefault && stored == nil && f.a.recoveredFile {
		// With no state of the machine, in a buffer file made at this
		// start because the old one was corrupt, the quantity may also be
		// pieces plantedge wrote before (the PEERS probe: 10 made, a fresh
		// file, 2 more, and Odoo 17 showed 2, said at INFO only). Said,
		// not kept for accept-qty to take back: a person running it with
		// nothing edited would book the default (the review: 100,003). Not
		// at a first start, nor after an Odoo switch, which forgets the
		// states: the start default is what those meet (the review).
		f.a.log.Warn("plantedge has no record of this machine (its buffer file was corrupt and moved aside at this start), "+
			"and on Odoo 17/18 the work order shows its remaining quantity, which is what starting it sets: counting from 0, plantedge's first write replaces it; "+
			"if those pieces were made (written by plantedge before its buffer file was lost), enter them plus the pieces counted since as the quantity in Odoo "+
			"and run plantedge accept-qty MACHINE",
			"machine", machine, "workorder", wo.Name, "odoo_qty", num(st.ZeroedFrom))
	} else if startDefault {
		f.a.log.Info("attributing counts to work order; its quantity is what starting it set (the remaining quantity), counting from 0",
			"machine", machine, "workorder", wo.Name, "odoo_qty", num(f.client.ProducedQty(*wo)))
	} else {
		f.a.log.Info("attributing counts to work order", "machine", machine, "workorder", wo.Name, "baseline", num(st.Baseline))
	}
	return st, nil
}

// cameBack tells whether the machine's work order, stored as this
// machine's (stored, its id wo's), has been counted on by another machine
// of this agent since: a planner moved it to another work center (an
// alternative press while this one was broken) and back. Odoo then holds
// more than this machine wrote: what another machine whose stored state
// names the order wrote last (or is writing: a write in doubt). Its
// quantity in Odoo is the new baseline: reusing the stored one wrote over
// the other machine's pieces (the gaps probe: 40 for 60). A quantity no
// machine wrote is an edit in Odoo, which the next write replaces as
// always (the attribution probe: taken for a return, an operator's 70
// became 80). It returns that machine, or "".
func (f *forwarder) cameBack(machine string, wo *odoo.Workorder, stored *woState) (string, error) {
	qty := f.client.RoundQty(f.client.ProducedQty(*wo))
	if stored.InFlight != nil || qty <= f.client.RoundQty(stored.Written) {
		return "", nil
	}
	var other string
	err := f.a.buf.MetaPrefix("wo/", func(key string, value []byte) error {
		if m := key[len("wo/"):]; m != machine && other == "" {
			st, err := decodeWOState(value)
			if err == nil && st.ID == wo.ID &&
				(st.Written > st.Baseline && f.sameQty(st.Written, qty) || st.InFlight != nil && f.sameQty(st.InFlight.Target, qty)) {
				other = m
			}
		}
		return nil
	})
	return other, err
}

// noteLateOrEdited logs two things a planner should know about a write the
// agent is about to make (it changes nothing):
//   - pieces made before this work order started that are booked here:
//     they reached Odoo as they were made (no backlog: a source clock
//     behind Odoo's), were stamped less than a minute before its start
//     (the clock slack of madeEarlier), were made while no order was in
//     progress, or Odoo would not show which was;
//   - a quantity someone changed in Odoo since plantedge wrote it: the
//     next absolute write replaces it;
//   - Odoo upgraded across 19 (moved): the quantity is now another field,
//     which plantedge writes its count to (not an edit).
func (f *forwarder) noteLateOrEdited(machine string, wo *odoo.Workorder, stored, st *woState, good *pendingKey, moved bool) {
	if good != nil && stored != nil && stored.ID != wo.ID && !wo.DateStart.IsZero() && good.first > 0 &&
		fromMS(good.first).Before(wo.DateStart) {
		// Keyed by the work order too: which order took which pieces must
		// not be lost to the once-a-minute limit of a machine's warnings.
		// The pieces made before it started, not all that wait (the Odoo
		// probe's line said 80 where 50 were).
		late := good.sum
		if pre, err := f.countPrefix(countKey(machine, sigGood), wo.DateStart.Truncate(time.Second), good.maxSeq); err == nil && pre.n > 0 {
			late = pre.sum
		}
		f.a.eventLog.log("late "+machine+" "+wo.Name, f.a.log, slog.LevelWarn,
			"pieces made before this work order started are booked on it: they reached Odoo as they were made (the machine's clock is behind Odoo's), were stamped less than a minute before its start, were made while no work order was in progress, or odoo would not show which was",
			"machine", machine, "workorder", orderName(wo), "previous", stored.Name, "pieces", num(late), "oldest", fromMS(good.first))
	}
	odooQty := f.client.RoundQty(f.client.ProducedQty(*wo))
	if moved {
		f.a.eventLog.log("moved "+machine, f.a.log, slog.LevelInfo,
			"Odoo keeps the work order's quantity in another field since it was upgraded (or restored): plantedge writes its count there",
			"machine", machine, "workorder", wo.Name, "field", f.client.ProducedField(), "was", st.Field, "odoo_qty", num(odooQty), "written", num(st.Written))
		return
	}
	if wo.SerialProducing(f.client.Major()) {
		return // Odoo keeps 1 there, not an edit (warnProducing says so)
	}
	if st.Written != st.Baseline && !f.sameQty(odooQty, st.Written) && (st.InFlight == nil || !f.sameQty(odooQty, st.InFlight.Target)) {
		f.a.eventLog.log("edited "+machine, f.a.log, slog.LevelWarn,
			"the work order's quantity was changed in Odoo since plantedge wrote it (by a person, or by another copy of this agent: a data_dir restored from a backup, a second box with this configuration); plantedge writes its count over it; to keep a correction: plantedge accept-qty MACHINE, which takes it back within an hour, also after plantedge wrote over it",
			"machine", machine, "workorder", wo.Name, "odoo_qty", num(odooQty), "written", num(st.Written))
		// Kept with the write that replaces it, for accept-qty — not
		// while a write is in doubt: the edit may hold its pieces or not
		// (the review: taken back, they were added to it again).
		now := time.Now().UTC()
		st.Replaced = nil
		if st.InFlight == nil {
			st.Replaced = &replacedEdit{Qty: odooQty, Over: st.Written, Counted: st.Counted, At: now}
		}
		// Shown until a round writes again: a person's edit is replaced
		// once, while Odoo itself holding the quantity (a customization)
		// shows here for good.
		msg := fmt.Sprintf("work order %s showed %s"+editedMarker+"%s: edited in Odoo, written by another copy of this agent "+
			"(a data_dir restored from a backup, a second box with this configuration), or Odoo keeps it there "+
			"(a customization); plantedge writes its count over it — if it was a correction to keep, "+
			"plantedge accept-qty %s takes it back until %s UTC, also after plantedge wrote over it", wo.Name, Qty(odooQty), Qty(st.Written), machine, now.Add(replacedHold).Format("15:04"))
		if st.InFlight != nil {
			msg = fmt.Sprintf("work order %s showed %s"+editedMarker+"%s, and a later write of %s had no answer: a correction cannot be told from it; "+
				"plantedge writes its count again — once Odoo shows it, correct the quantity again and run plantedge accept-qty %s", wo.Name, Qty(odooQty), Qty(st.Written), Qty(st.InFlight.Target), machine)
		}
		f.setMachine(machine, func(ml *machineLink) {
			if ml.Error == "" {
				ml.Error = msg
			}
		})
	}
}

func woName(wo *odoo.Workorder) string {
	if wo == nil {
		return ""
	}
	return wo.Name
}
