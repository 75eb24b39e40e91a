package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo"
)

// scrapOutbox is a scrap booking decided but not yet confirmed by Odoo. It
// is stored before the call, so a retry after a crash or a timeout books
// the same quantity under the same external id: never twice.
type scrapOutbox struct {
	XMLID        string  `json:"xmlid"`
	Qty          float64 `json:"qty"`
	MaxSeq       uint64  `json:"max_seq"`
	WorkorderID  int64   `json:"wo"`
	ProductionID int64   `json:"mo"`
	ProductID    int64   `json:"product"`
	UomID        int64   `json:"uom"`
	// Carry is what is left of the scrap counted once Qty (rounded to
	// the decimals Odoo keeps, 2 by default) is booked: it goes into the
	// next booking, so fractional scrap (0.125 kg at a time) adds up
	// exactly instead of drifting by a rounding per booking. (This version stores no outbox
	// with a Qty of 0; one from an earlier version books nothing.)
	Carry float64 `json:"carry,omitempty"`
	// Recheck: decided for another Odoo (switchOdoo); its ids are checked
	// before it is booked.
	Recheck bool `json:"recheck,omitempty"`
	// Sum is the CRC-32C of the rest as stored (MarshalJSON), as a work
	// order's state carries one: a flipped bit that leaves the JSON
	// readable would book another quantity, or on another work order,
	// unseen. 0 in outboxes of older versions, which go unchecked.
	Sum uint32 `json:"sum,omitempty"`
}

// scrapOutboxFields is scrapOutbox without its MarshalJSON.
type scrapOutboxFields scrapOutbox

func (ob *scrapOutboxFields) sum() *uint32 { return &ob.Sum }

// MarshalJSON stores ob with its checksum (Sum).
func (ob scrapOutbox) MarshalJSON() ([]byte, error) { return sealJSON(scrapOutboxFields(ob)), nil }

// decodeScrapOutbox reads a stored scrap booking in flight: an error for
// one that does not read, or whose checksum does not hold.
func decodeScrapOutbox(b []byte) (scrapOutbox, error) {
	ob, err := openJSON[scrapOutboxFields](b)
	return scrapOutbox(ob), err
}

func scrapMetaKey(machine string) string { return "scrap/" + machine }

// damagedScrapMsg is what the log says of a machine's scrap booking in
// flight whose stored outbox cannot be read.
const damagedScrapMsg = "the buffer file's scrap booking in flight of this machine cannot be read (damaged on the disk?): set aside; " +
	"its waiting scrap is booked anew — if the booking in flight had reached Odoo, that scrap is there twice: check the work order's scrap"

// scrapCarryKey holds a machine's scrap carry (scrapOutbox.Carry) between
// bookings.
func scrapCarryKey(machine string) string { return "scrapcarry/" + machine }

// carryKV stores a machine's scrap carry (0 deletes the key).
func carryKV(machine string, carry float64) buffer.KV {
	kv := buffer.KV{Key: scrapCarryKey(machine)}
	if carry != 0 {
		kv.Value = []byte(strconv.FormatFloat(carry, 'g', -1, 64))
	}
	return kv
}

// forwardScrap books pending scrap through an outbox entry, so the same
// booking is never made twice: the entry (external id, quantity, the last
// record it covers) is stored before the call and cleared in the
// transaction after the last of its records is acknowledged.
func (f *forwarder) forwardScrap(ctx context.Context, machine string, wo *odoo.Workorder, p *pendingKey, acks *ackPlan) error {
	cur := wo // the work order in progress (gatherScrap may book on an earlier one)
	var ob scrapOutbox
	b, err := f.a.buf.Meta(scrapMetaKey(machine))
	if err != nil {
		return err
	}
	if b != nil {
		if ob, err = decodeScrapOutbox(b); err != nil {
			// Damaged on the disk: taken as none, so that it does not stop
			// every machine's forwarding; the next booking replaces it.
			f.a.eventLog.log("damaged scrap "+machine, f.a.log, slog.LevelError, damagedScrapMsg, "machine", machine, "err", err)
			b, ob = nil, scrapOutbox{}
		}
	}
	switch {
	case b != nil:
		if ob.Recheck {
			// Decided for another Odoo (switchOdoo): the same database
			// under another address still has its work order, on the
			// machine's work center, with its manufacturing order and
			// product; another database gets it on the work order in
			// progress there (ids alike by chance name another machine's).
			var wcID int64
			if mc := findMachine(f.a.cfg.Load(), machine); mc != nil {
				wcID = f.wcs[mc.Workcenter].ID
			}
			old, found, err := f.workorderIfAny(ctx, ob.WorkorderID)
			switch {
			case err != nil:
				return err
			case found && wcID != 0 && old.WorkcenterID == wcID && old.ProductionID == ob.ProductionID && old.ProductID == ob.ProductID:
			default:
				if wo == nil {
					return nil
				}
				ob.WorkorderID, ob.ProductionID, ob.ProductID, ob.UomID = wo.ID, wo.ProductionID, wo.ProductID, wo.UomID
			}
			ob.Recheck = false
			if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine), Value: mustJSON(ob)}); err != nil {
				return err
			}
		}
		if err := f.reroundScrap(ctx, machine, &ob); err != nil {
			return err
		}
	case p == nil || p.sum == 0:
		return nil
	case f.gatherScrap(machine, &wo):
		return nil // gathered after a draft (scrapGather)
	case wo == nil:
		return nil
	default:
		if earlier, pre, why, err := f.madeEarlier(ctx, machine, "scrap", wo, p); err != nil {
			return err
		} else if earlier != nil && earlier.State == "cancel" {
			// Booked on the order in progress, it would take that order's
			// product out of stock; on the cancelled one, on an order Odoo
			// closed. Kept, with the reason, for a person.
			reason := fmt.Sprintf(cancelledOrderReason+"%s scrap made from %s to %s UTC on work order %s (%s), which was cancelled: not booked on %s, "+
				"in progress now (another product's, maybe); book it in Odoo by hand if need be (product id %d), then drop this dead letter",
				Qty(pre.sum), fromMS(pre.first).UTC().Format(time.DateTime), fromMS(pre.last).UTC().Format(time.DateTime), orderName(earlier), why,
				orderName(wo), earlier.ProductID)
			return f.deadLetterKeyAs(ctx, countKey(machine, sigScrap), pre.maxSeq, reason,
				"scrap made on a work order cancelled before it reached Odoo: moved to the dead letters")
		} else if earlier != nil {
			// This round books the oldest stretch; the rest goes in the next rounds.
			f.a.log.Info("scrap "+why+": booked there (its product and manufacturing order)", "machine", machine, "workorder", earlier.Name,
				"state", earlier.State, "scrap", num(pre.sum), "made_from", fromMS(pre.first), "made_up_to", fromMS(pre.last), "in_progress_now", wo.Name)
			wo, p = earlier, &pre
		}
		carry, err := f.scrapCarry(machine)
		if err != nil {
			return err
		}
		total := decimal.Add(carry, p.sum)
		qty, err := f.scrapQty(ctx, total, wo.UomID)
		if err != nil {
			return err
		}
		if qty <= 0 {
			// Below Odoo's precision so far: nothing to book, so no
			// outbox (an older version rolled back to would take one for
			// a booking of 0 and dead-letter it). The records' ack stores
			// the carry in its own transaction. Below 0: more was booked
			// than counted (1.6 booked 2 at 0 decimals, then 0.1 more at
			// 2), which Odoo refuses to book: carried until counted.
			key := countKey(machine, sigScrap)
			acks.add(key, p.maxSeq)
			acks.carries[key] = total
			return nil
		}
		ob = scrapOutbox{
			XMLID:        fmt.Sprintf("plantedge.%s_%s_scrap_%s_%d", f.a.cfg.Load().Site, machine, f.a.bufID, p.maxSeq),
			Qty:          qty,
			MaxSeq:       p.maxSeq,
			WorkorderID:  wo.ID,
			ProductionID: wo.ProductionID,
			ProductID:    wo.ProductID,
			UomID:        wo.UomID,
			Carry:        decimal.Sub(total, qty),
		}
		f.a.holdInFlight(countKey(machine, sigScrap), ob.MaxSeq)
		if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine), Value: mustJSON(ob)}); err != nil {
			return err
		}
	}
	done := ob.Qty == 0 // an outbox of 0 from a version that stored one, or rounded to nothing (reroundScrap): nothing to book
	booking := &odoo.Scrap{XMLID: ob.XMLID, ProductID: ob.ProductID, UomID: ob.UomID,
		ProductionID: ob.ProductionID, WorkorderID: ob.WorkorderID, Qty: ob.Qty,
		ConfirmShort: f.a.cfg.Load().Odoo.ScrapWhenShort == "confirm"}
	var bookedOn string // its work order's names, if this is it
	if wo != nil && wo.ID == ob.WorkorderID {
		bookedOn = workorderLabel(wo)
	}
	if !done {
		err = f.call(ctx, "book_scrap", func(ctx context.Context) error {
			var err error
			done, err = f.client.BookScrap(ctx, *booking)
			return err
		})
	} else {
		booking = nil
	}
	switch {
	case err == nil && done:
		delete(f.scrapShortAt, machine)
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry, booked: booking, bookedOn: bookedOn})
		f.a.metrics.forwarded.WithLabelValues("scrap_count").Add(ob.Qty)
		return nil
	case err == nil && !done:
		// Not a refusal: Odoo has the booking, as a draft under its
		// external id, on its work order, for a person to validate (its
		// Insufficient Quantity dialog). The records are acknowledged —
		// later scrap is booked on the work order it is made on — and the
		// draft is watched (checkScrapDrafts), never booked a second time.
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		d := scrapDraft{XMLID: ob.XMLID, Qty: ob.Qty, Workorder: woName(wo), At: time.Now().UTC().Truncate(time.Second)}
		if cur != nil && ob.WorkorderID == cur.ID {
			// The next booking gathers a while (scrapGather) — only on the
			// order in progress: a draft of an earlier order's pieces must
			// not make later scrap wait for (and go to) that order.
			f.scrapShortAt[machine] = scrapGathering{at: time.Now(), wo: *cur}
		}
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry, draft: &d, booked: booking, bookedOn: bookedOn})
		f.a.eventLog.log("scrap short "+machine, f.a.log, slog.LevelWarn,
			"odoo has too little stock to scrap: the booking is a draft in Odoo until a person validates it there (odoo.scrap_when_short: hold)",
			"machine", machine, "xmlid", ob.XMLID, "qty", num(ob.Qty))
		return nil
	case odoo.IsAuth(err) || !odoo.IsPermanent(err):
		return err
	}
	if dl := (*odoo.DraftLeftError)(nil); errors.As(err, &dl) {
		if settled, err := f.roundedAwayByOdoo(ctx, machine, &ob); err != nil {
			return err
		} else if settled {
			acks.add(countKey(machine, sigScrap), ob.MaxSeq)
			acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry})
			return nil
		}
		// Odoo has the booking, a draft under its external id, and refused
		// for good to validate it (a lot or serial number it needs, a rule,
		// the bot lacking the right): it is watched as a draft, with why,
		// not dead-lettered — a retry under another id would book the
		// pieces twice once someone validates this draft. A flush
		// validates it again (checkScrapDrafts).
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		msg, _, _ := strings.Cut(err.Error(), "\n")
		d := scrapDraft{XMLID: ob.XMLID, Qty: ob.Qty, Workorder: woName(wo), At: time.Now().UTC().Truncate(time.Second), Refused: msg}
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry, draft: &d, booked: booking, bookedOn: bookedOn})
		f.a.eventLog.log("scrap refused "+machine, f.a.log, slog.LevelError,
			"odoo refused to validate a scrap booking: it is a draft in Odoo until the cause is fixed and it is validated (there, or by plantedge flush)",
			"machine", machine, "xmlid", ob.XMLID, "qty", num(ob.Qty), "err", err)
		return nil
	}
	if err := f.deadLetterKey(ctx, countKey(machine, sigScrap), ob.MaxSeq, "book scrap "+ob.XMLID+": "+err.Error()); err != nil {
		return err
	}
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine)}); err != nil {
		return err
	}
	f.a.holdInFlight(countKey(machine, sigScrap), 0)
	return nil
}

// scrapQty is the scrap booking of total (what is counted and carried):
// rounded to the decimals Odoo keeps, read again first, once a round,
// when the rounding has a fraction — Odoo's administrator may have set
// fewer decimals since they were read (at a connect, with the version
// every few minutes, or when a work order showed a write rounded: scrap
// alone shows none), and Odoo would round the booking itself: 0.4 to a
// scrap of 0 it refuses to validate, a draft left for a person and the
// 0.4 lost; 1.6 to 2, the 0.4 booked too many not carried. A whole
// quantity is the same at any precision, and one of 0 or below (nothing
// to book) stays so at fewer decimals: scrap in pieces asks nothing. (Set
// between this read and the load, Odoo still rounds the booking: a scrap
// of 0 is then settled by roundedAwayByOdoo, and one done rounded whose
// answer was lost by reroundScrap; one done rounded and answered is
// settled as decided, 1.6 where Odoo holds 2.)
//
// A booking with a fraction is also rounded to a multiple of its unit's
// rounding (uom: the scrap's unit, the work order's), read with the
// decimals, once a round, when that is coarser than they are: Odoo
// validates a scrap in it, and refuses one it does not divide (17.0 and
// 18.0 keep it for each unit, 0.01 as installed: 3 decimals set and the
// units left, 0.125 kg was refused, a draft left for a person; 1.0 set for
// pieces, 0.4 was "not positive" and 1.6 refused). What it leaves over is
// carried like the decimals' (0.4 pieces of a unit of 1.0 book nothing yet).
func (f *forwarder) scrapQty(ctx context.Context, total float64, uom int64) (float64, error) {
	qty := f.client.RoundQty(total)
	if qty <= 0 || qty == decimal.Round(qty, 0) {
		return qty, nil
	}
	if !f.digitsFresh {
		if err := f.call(ctx, "read_precision", f.client.RefreshQtyDigits); err != nil {
			return 0, err
		}
		f.digitsFresh = true
		f.unitRoundings = nil
	}
	unit, err := f.scrapUnitRounding(ctx, uom)
	if err != nil {
		return 0, err
	}
	return f.client.RoundScrapQty(total, unit), nil
}

// scrapUnitRounding is the rounding of unit uom (odoo.Client.UnitRounding),
// read once a round (see scrapQty); 0 (the decimals alone) for no unit, or
// when Odoo refuses the read, said once at WARN.
func (f *forwarder) scrapUnitRounding(ctx context.Context, uom int64) (float64, error) {
	if uom == 0 {
		return 0, nil
	}
	if r, ok := f.unitRoundings[uom]; ok {
		return r, nil
	}
	r, err := callFor(ctx, f, "read_unit_rounding", func(ctx context.Context) (float64, error) {
		return f.client.UnitRounding(ctx, uom)
	})
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
		return 0, err
	}
	if err != nil {
		if !f.unitRoundingRefused {
			f.a.log.Warn("the rounding of a unit of measure cannot be read: scrap is rounded to Odoo's decimals alone, "+
				"and Odoo may refuse to validate a booking its unit's rounding does not divide (left a draft)", "uom", uom, "err", err)
		}
		f.unitRoundingRefused = true
		r = 0
	}
	if f.unitRoundings == nil {
		f.unitRoundings = map[int64]float64{}
	}
	f.unitRoundings[uom] = r
	return r, nil
}

// reroundScrap rounds a scrap booking in flight (ob, stored: decided, not
// yet booked — Odoo was away, or its answer was lost) to the decimals Odoo
// keeps now, when its administrator set fewer since it was decided: sent
// as decided, Odoo would round it itself (scrapQty). What the new rounding
// leaves over joins ob's carry; rounded to nothing, there is nothing to
// book, and ob is settled with its carry in this round's ack (ob.Qty 0).
// Unless it reached Odoo before (found under its external id, its answer
// lost):
//   - done there, it is settled by what Odoo holds: as decided (BookScrap
//     finds it done), or as rounded anew when Odoo holds that — it stored
//     the booking rounded, fewer decimals set between the agent's read of
//     them and the load — what the rounding left over carried;
//   - a draft is loaded again rounded anew (the load updates it);
//   - a draft rounded to nothing cannot be booked (Odoo refuses a scrap of
//     0, and 0 decimals cannot hold 0.4): its quantity is written 0
//     (odoo.Client.ZeroScrapDraft), so that Odoo can never validate it —
//     the bot user may not delete it — and it is settled as one not found,
//     what it held carried into the next booking; the draft of 0 left in
//     Odoo is logged at WARN, for a person to delete.
//
// Settled in the ack (rounded to nothing), ob is not stored: stopped
// before the ack, the agent finds the stored ob again at its next start
// and does the same (the draft found 0, the write not made again).
func (f *forwarder) reroundScrap(ctx context.Context, machine string, ob *scrapOutbox) error {
	if ob.Qty <= 0 {
		return nil
	}
	qty, err := f.scrapQty(ctx, ob.Qty, ob.UomID)
	if err != nil || qty == ob.Qty {
		return err
	}
	var found map[string]odoo.ScrapBooking
	err = f.call(ctx, "scrap_states", func(ctx context.Context) error {
		var err error
		found, err = f.client.ScrapBookings(ctx, []string{ob.XMLID})
		return err
	})
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
		return err
	}
	if err != nil {
		return nil // as it stands (a refusal: BookScrap meets it too)
	}
	b, inOdoo := found[ob.XMLID]
	if inOdoo && b.State == "draft" && qty == 0 {
		err = f.call(ctx, "zero_scrap", func(ctx context.Context) error {
			var err error
			b, err = f.client.ZeroScrapDraft(ctx, ob.XMLID)
			return err
		})
		if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
			return err
		}
		if err != nil {
			// Refused for good: as it stands — loaded again, refused a
			// validation, watched and shown as a draft (as before the write).
			f.a.log.Warn("odoo refused to set a scrap draft rounded to nothing to 0", "machine", machine, "xmlid", ob.XMLID, "err", err)
			return nil
		}
		inOdoo = b.State != "" // deleted meanwhile: as one not found
	}
	switch {
	case !inOdoo, b.State == "draft" && qty > 0:
		f.a.log.Info("scrap booking in flight rounded to the decimals Odoo keeps now", "machine", machine, "xmlid", ob.XMLID,
			"qty", num(qty), "decided", num(ob.Qty), "digits", f.client.QtyDigits())
	case b.State == "draft":
		f.a.log.Warn("scrap booking in flight rounded to nothing at the decimals Odoo keeps now: its draft in Odoo is set to 0 and left there, "+
			"which Odoo never validates (delete it there if you like; the bot user may not); what it held goes into the next booking",
			"machine", machine, "xmlid", ob.XMLID, "decided", num(ob.Qty), "digits", f.client.QtyDigits())
	case b.State == "done" && b.Qty == qty:
		f.a.log.Info("scrap booking in flight found done in Odoo as it rounded it: settled by what Odoo holds", "machine", machine, "xmlid", ob.XMLID,
			"qty", num(qty), "decided", num(ob.Qty), "digits", f.client.QtyDigits())
	default:
		return nil // done as decided (BookScrap finds it so)
	}
	ob.Carry = decimal.Add(ob.Carry, decimal.Sub(ob.Qty, qty))
	ob.Qty = qty
	if qty == 0 {
		return nil // settled in this round's ack, with its carry: no outbox of 0 stored (see scrapOutbox.Carry)
	}
	return f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine), Value: mustJSON(*ob)})
}

// roundedAwayByOdoo settles a scrap booking (ob) whose validation Odoo
// refused because it stored the booking as nothing: its administrator set
// fewer decimals between the agent's read of them (scrapQty) and the load,
// and Odoo rounded 0.4 to a scrap of 0, which it refuses to validate — no
// refusal a person could fix (0.4 cannot be entered at 0 decimals). With
// a fraction, the decimals are read again; rounded to nothing at them, ob
// is rounded anew as reroundScrap does (the draft holds 0, or is written
// 0; what it held carried) and settled: true, ob.Qty 0. Any other refusal
// is false, for the caller to watch as a draft. Stopped before the ack,
// the agent finds the stored ob again and reroundScrap does the same.
func (f *forwarder) roundedAwayByOdoo(ctx context.Context, machine string, ob *scrapOutbox) (bool, error) {
	if ob.Qty <= 0 || ob.Qty == decimal.Round(ob.Qty, 0) {
		return false, nil
	}
	if err := f.call(ctx, "read_precision", f.client.RefreshQtyDigits); err != nil {
		if odoo.IsAuth(err) || !odoo.IsPermanent(err) {
			return false, err
		}
		return false, nil
	}
	f.digitsFresh = true
	f.unitRoundings = nil // its unit's rounding read anew too: set coarser meanwhile, Odoo refused 0.4 of 1.0 as not positive
	unit, err := f.scrapUnitRounding(ctx, ob.UomID)
	if err != nil {
		return false, err
	}
	if f.client.RoundScrapQty(ob.Qty, unit) != 0 {
		return false, nil
	}
	if err := f.reroundScrap(ctx, machine, ob); err != nil {
		return false, err
	}
	return ob.Qty == 0, nil
}

// madeEarlier finds counts of one machine's signal (its pending p: scrap,
// good pieces) waiting from before wo started — made on work orders the
// planner finished while they could not reach Odoo (an outage) — or made
// after wo started while another order was worked on (wo paused for a
// rush order and resumed meanwhile), and returns the work order the
// oldest stretch of them was made on, that stretch (what was made up to
// the start of the work order that followed), and why, for the log. One
// stretch a round: with several work orders in one outage, each gets its
// own. The stretch goes to
//   - the work order in progress when it was made (done since, or paused:
//     wo itself when it is the one, up to the next one's start);
//   - the next one started, when none was in progress then (between the
//     end of one and the start of the next, or on an order that was
//     cancelled: those are left out, as one may never have been started).
//
// A stretch ends at the next order's start, or the end of the one it was
// made on. Its caller books it there (scrap, which Odoo takes on a
// finished order too) or writes it there (pieces, on an order still in
// progress; a finished one takes no quantity).
//
// Only a backlog is looked up — the oldest of p waited backlogAge, by this
// box's clock (an outage held it, or no order was in progress), or came
// replayLag late (the broker kept it: see offsets): counts
// that reach Odoo as they are made go to the order worked on, whatever
// their source's clock says (a source clock behind would make every value
// look old; and the counts lane's head, another machine's counts held for
// want of a work order, made every round of every machine look up its
// orders). Counts made within backlogClockSlack before wo started are
// wo's: a source clock seconds behind Odoo's would otherwise move those of
// the new order onto the finished one. nil when nothing waits from
// another order.
func (f *forwarder) madeEarlier(ctx context.Context, machine, what string, wo *odoo.Workorder, p *pendingKey) (*odoo.Workorder, pendingKey, string, error) {
	start := wo.DateStart.Truncate(time.Second)
	cut := start.Add(-f.clockSlack())
	t := fromMS(p.first)
	backlog := f.backlog(p.buffered, p.lag)
	after := !t.Before(start)
	key := machine + "/" + what
	if c, ok := f.backlogClear[key]; ok && (c.wo != wo.ID || time.Since(c.at) >= backlogRecheck) {
		delete(f.backlogClear, key)
	} else if ok && after && !t.Before(c.from) {
		return nil, pendingKey{}, "", nil // looked up less than backlogRecheck ago
	}
	switch {
	case start.IsZero() || p.first == 0 || !backlog:
		// Not waited: the order in progress, as it reaches Odoo. A machine
		// clock minutes behind Odoo's made each new order's first pieces
		// look made before it started: dead-lettered one a round (the
		// review: 0 of 5 on the new order), or written to a paused one.
		return nil, pendingKey{}, "", nil
	case after:
		cut = time.Now()
	case !t.Before(start):
		return nil, pendingKey{}, "", nil
	case !t.Before(cut):
		f.a.eventLog.log(what+" slack "+machine, f.a.log, slog.LevelInfo,
			what+" stamped shortly before this work order started go to it: a machine's clock seconds behind Odoo's is taken as such",
			"machine", machine, "workorder", wo.Name, "stamped", t, "started", start)
		return nil, pendingKey{}, "", nil
	}
	if f.soloFrom(wo, t) {
		// The only order in play on the work center from t on: wo's, as
		// the timeline would say.
		if after {
			f.markClear(key, wo, t)
		}
		return nil, pendingKey{}, "", nil
	}
	tl, err := f.workTimeline(ctx, machine, what, wo, t)
	if err != nil || tl == nil {
		return nil, pendingKey{}, "", err
	}
	at, next, _ := tl.At(t)
	ns := tl.NextStart(t) // (next skips orders cancelled since: their stretches end it too)
	if after && (at == nil || at.ID == wo.ID && ns.IsZero()) {
		// wo's, or made while none was in progress: wo's. So is what waits
		// from t on, for a while: every round of a backlog's drain looked
		// it up again, three or four calls a machine, which the rate
		// limit then took from the drain.
		f.markClear(key, wo, t)
		return nil, pendingKey{}, "", nil
	}
	if !ns.IsZero() && ns.Before(cut) {
		// Work moved to the next order then (wo itself, resumed after a
		// rush order: the rush order's stretch ends there; or one cancelled
		// since, whose stretch is its own).
		cut = ns.Truncate(time.Second)
	}
	if at != nil && at.Ended() && !at.DateFinished.IsZero() && at.DateFinished.Before(cut) {
		// What follows its end (a cancelled one's: its last time line's),
		// up to the next start, was made while no order was in progress: a
		// stretch of its own (the next round).
		cut = at.DateFinished.Truncate(time.Second).Add(time.Second)
	}
	pre, err := f.countPrefix(countKey(machine, signalOf(what)), cut, p.maxSeq)
	if err != nil || pre.n == 0 {
		return nil, pendingKey{}, "", err
	}
	usable := func(w *odoo.Workorder) bool {
		return w != nil && w.State != "cancel" && w.ProductionID != 0 && w.ProductID != 0
	}
	target, why := at, "made on an earlier work order, finished (or left for another) before they reached Odoo"
	switch {
	case at != nil && at.ID == wo.ID:
		why = "made on this work order before another was started on the work center (it was paused): up to that start"
	case at != nil && at.State == "cancel":
		// Its own, kept for a person (sendCounts, forwardScrap): before,
		// they went to the next order started, another product's maybe
		// (the operators probe).
		why = "made on an earlier work order, cancelled before they reached Odoo"
		return target, pre, why, nil
	case at == nil && usable(next):
		target, why = next, "made while no work order was in progress: the next one started"
	case at == nil:
		target, why = wo, "made while no work order was in progress: the one in progress"
	}
	if !usable(target) {
		target = wo
	}
	return target, pre, why, nil
}

// markClear notes that machine's signal key has nothing but wo waiting
// from t on (backlogMark).
func (f *forwarder) markClear(key string, wo *odoo.Workorder, t time.Time) {
	if f.backlogClear == nil {
		f.backlogClear = map[string]backlogMark{}
	}
	f.backlogClear[key] = backlogMark{wo: wo.ID, from: t, at: time.Now()}
}

// dropBacklogMarks drops what madeEarlier found for a machine looked at
// this round (a backlogMark) once the order in progress there is not the
// one it was found for: the finding was of that order's stretch. Kept, it
// sent scrap gathered on a finished order to that order for a minute,
// whatever was made since on the next one (a flake on loaded machines,
// where the draft's own scrap had waited long enough to be a backlog).
func (f *forwarder) dropBacklogMarks(look []string, wos map[string]*odoo.Workorder) {
	for key, c := range f.backlogClear {
		machine, _ := splitKey(key)
		if !slices.Contains(look, machine) {
			continue
		}
		if wo := wos[machine]; wo == nil || wo.ID != c.wo {
			delete(f.backlogClear, key)
		}
	}
}

// soloSince finds, once a round for every work center whose machine has
// a backlog to cut by order (counts or stops: see madeEarlier and
// stopWorkorder) and one order in progress, whether another order was in
// play there since the backlog's oldest value (odoo.Client.OthersWorked:
// two calls for them all). Where none was, f.solo holds that time, and
// the backlog is the order's without a timeline: before, every machine's
// backlog read one (three calls a machine), and the drain of 100
// machines' outage took 405 calls, 110-120 s at the default rate, for
// SPEC's 30 s (the SPEC probe).
func (f *forwarder) soloSince(ctx context.Context, events []pendingEvent, pending map[string]*pendingKey, wos map[string]*odoo.Workorder, byWC map[int64][]odoo.Workorder) error {
	f.solo = nil
	since := map[int64]time.Time{}
	sole := map[int64]int64{}
	note := func(machine string, t time.Time) {
		wo := wos[machine]
		if wo == nil || t.IsZero() || len(byWC[wo.WorkcenterID]) != 1 {
			return
		}
		wc := wo.WorkcenterID
		if s, ok := since[wc]; !ok || t.Before(s) {
			since[wc] = t
		}
		sole[wc] = wo.ID
	}
	for k, p := range pending {
		if p.sum != 0 && p.first != 0 && f.backlog(p.buffered, p.lag) {
			m, _ := splitKey(k)
			note(m, fromMS(p.first))
		}
	}
	for _, e := range events {
		if !e.elsewhere && e.ev.Start != 0 && f.backlog(e.rec.Time, f.a.srcOff.lag(e.rec.Key, e.ev.Off)) {
			note(e.rec.Key, fromMS(e.ev.Start))
		}
	}
	if len(since) == 0 {
		return nil
	}
	others, err := callFor(ctx, f, "others_worked", func(ctx context.Context) (map[int64]bool, error) {
		return f.client.OthersWorked(ctx, sole, since)
	})
	switch {
	case err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)):
		return err
	case err != nil:
		return nil // refused for good: each machine's timeline, as before
	}
	f.solo = map[int64]soloMark{}
	for wc, t := range since {
		if !others[wc] {
			f.solo[wc] = soloMark{wo: sole[wc], since: t}
		}
	}
	return nil
}

// soloMark is what soloSince found for a work center: from since on, order
// wo (the one in progress) is the only one in play there.
type soloMark struct {
	wo    int64
	since time.Time
}

// soloFrom reports whether wo is the only order in play on its work
// center from t on, as this round's soloSince found — wo itself, the order
// in progress: not another asked about on the same work center (scrap
// gathered on a finished order: the review, every piece booked on it).
func (f *forwarder) soloFrom(wo *odoo.Workorder, t time.Time) bool {
	s, ok := f.solo[wo.WorkcenterID]
	return ok && s.wo == wo.ID && !t.Before(s.since)
}

// clockSlack is backlogClockSlack, or the tests' Options.BacklogClockSlack.
func (f *forwarder) clockSlack() time.Duration {
	return cmp.Or(f.a.opts.BacklogClockSlack, backlogClockSlack)
}

// workTimeline reads which orders wo's work center worked on from since on
// (odoo.Client.WorkTimeline), for a backlog of machine's what (pieces,
// scrap, stops). nil when Odoo refuses for good (logged once a minute):
// the backlog then goes to wo.
func (f *forwarder) workTimeline(ctx context.Context, machine, what string, wo *odoo.Workorder, since time.Time) (*odoo.Timeline, error) {
	tl, err := callFor(ctx, f, "work_timeline", func(ctx context.Context) (odoo.Timeline, error) {
		return f.client.WorkTimeline(ctx, wo.WorkcenterID, since)
	})
	switch {
	case err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)):
		return nil, err
	case err != nil:
		f.a.eventLog.log(what+" before "+machine+" "+wo.Name, f.a.log, slog.LevelWarn,
			what+" made before this work order started go to it: odoo refused to show the work orders before it",
			"machine", machine, "workorder", wo.Name, "oldest", since, "err", err)
		return nil, nil
	}
	return &tl, nil
}

// backlogMark is what madeEarlier found for a machine's signal: from on,
// only work order wo, as Odoo said at at.
type backlogMark struct {
	wo       int64
	from, at time.Time
}

// backlogRecheck is how long a backlogMark stands: an order started since
// on the work center is seen within it.
const backlogRecheck = time.Minute

// signalOf is the count signal madeEarlier's what names.
func signalOf(what string) string {
	if what == "scrap" {
		return sigScrap
	}
	return sigGood
}

// backlogClockSlack: counts stamped this little before the work order in
// progress started are taken as its own (see madeEarlier).
const backlogClockSlack = time.Minute

// backlogAge: counts that waited this long are a backlog (an outage held
// them), whose work order is looked up by when they were made (see
// madeEarlier).
const backlogAge = 2 * time.Minute

// scrapDraft is a scrap booking Odoo left a draft for too little stock
// (scrap_when_short: hold), watched until a person validates or deletes it.
type scrapDraft struct {
	XMLID     string    `json:"xmlid"`
	Qty       float64   `json:"qty"`
	Workorder string    `json:"wo,omitempty"`
	At        time.Time `json:"at,omitzero"` // when Odoo left it a draft
	// Refused is Odoo's answer when it refused for good to validate the
	// booking (not a matter of stock): a flush tries again.
	Refused string `json:"refused,omitempty"`
	// Elsewhere is the Odoo it was left a draft in, when plantedge has
	// been pointed at another since (switchOdoo): not found here, it is
	// there, not deleted. NotHere: the Odoo configured now was asked and
	// lacks it (logged once). It is watched on, shown on its machine, and
	// looked at again if plantedge is pointed there again (the third
	// self-probe: dropped at the first check, it was never seen again).
	Elsewhere string `json:"elsewhere,omitempty"`
	NotHere   bool   `json:"not_here,omitempty"`
}

func scrapDraftKey(machine, xmlid string) string { return "scrapdraft/" + machine + "/" + xmlid }

// scrapDraftRecheck is how often the drafts are looked at (a flush looks
// at once); scrapDraftWatch how long one is watched: a person may leave
// one a draft for good (the dialog's Discard from the scrap's own form
// keeps it).
const (
	scrapDraftRecheck = time.Minute
	scrapDraftWatch   = 7 * 24 * time.Hour
)

// scrapGathering is a machine's scrap being gathered after a draft: since
// when, and on which work order.
type scrapGathering struct {
	at time.Time
	wo odoo.Workorder
}

// gatherScrap reports whether a machine's scrap is to wait (gathered after
// a draft, see scrapGather). Once the work order it was gathered on is no
// longer in progress, *wo becomes that order: the pieces were made there,
// and are booked there now.
func (f *forwarder) gatherScrap(machine string, wo **odoo.Workorder) bool {
	g, ok := f.scrapShortAt[machine]
	if !ok {
		return false
	}
	if *wo == nil || (*wo).ID != g.wo.ID {
		delete(f.scrapShortAt, machine)
		*wo = &g.wo
		return false
	}
	if time.Since(g.at) < scrapGather && !f.flushed && f.a.cfg.Load().Odoo.ScrapWhenShort != "confirm" {
		return true
	}
	delete(f.scrapShortAt, machine)
	return false
}

// scrapGather is how long a machine's scrap is gathered after Odoo left a
// booking of it a draft, before the next booking: with too little stock at
// the location (always, with 2- or 3-step manufacturing) every booking
// would otherwise make a draft for a person to handle — one every round.
// A flush books at once.
const scrapGather = 15 * time.Minute

// checkScrapDrafts looks at the scrap drafts being watched, two calls for
// up to 500: one validated in Odoo is done with; one deleted there was a
// person's decision not to book it, and is logged; one left a draft for
// scrapDraftWatch is no longer watched (logged); the others are shown on
// their machine. It only reads: validating is left to the person, so the
// two can never both book it. A failure is logged and shown, and waits for
// the next check: it never fails the round.
func (f *forwarder) checkScrapDrafts(ctx context.Context) error {
	if time.Since(f.draftsAt) < scrapDraftRecheck && !f.flushed {
		return nil
	}
	drafts, err := storedScrapDrafts(f.a.buf)
	if err != nil {
		return err
	}
	var xmlids []string
	for _, e := range drafts {
		xmlids = append(xmlids, e.d.XMLID)
	}
	f.draftsAt = time.Now()
	if len(drafts) == 0 {
		f.mu.Lock()
		f.drafts = nil
		f.mu.Unlock()
		return nil
	}
	var states map[string]string
	err = f.call(ctx, "scrap_states", func(ctx context.Context) error {
		var err error
		states, err = f.client.ScrapStates(ctx, xmlids)
		return err
	})
	if err != nil {
		f.a.eventLog.log("scrap drafts", f.a.log, slog.LevelWarn, "cannot read the scrap drafts in Odoo; trying again in a minute", "err", err)
		msgs := map[string]string{} // a new map: status holds the old one
		for _, e := range drafts {
			msgs[e.machine] = "cannot read its scrap drafts in Odoo: " + err.Error()
		}
		f.mu.Lock()
		f.drafts = msgs
		f.mu.Unlock()
		return nil
	}
	var gone, told []buffer.KV
	waiting := map[string][]scrapDraft{}
	for _, e := range drafts {
		switch state, found := states[e.d.XMLID]; {
		case found && state == "draft" && !e.d.At.IsZero() && time.Since(e.d.At) > scrapDraftWatch:
			f.a.log.Warn("scrap draft no longer watched: still a draft in Odoo after a week (validate or delete it there)",
				"machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty))
		case found && state == "draft" && e.d.Refused != "" && f.flushed:
			// Refused for good when booked: the cause may be fixed now.
			d, done, err := f.revalidateScrap(ctx, e)
			if err != nil {
				return err
			}
			if !done {
				waiting[e.machine] = append(waiting[e.machine], d)
				continue
			}
			f.a.log.Info("scrap draft validated by the flush", "machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty))
		case found && state == "draft":
			waiting[e.machine] = append(waiting[e.machine], e.d)
			continue
		case found:
			f.a.log.Info("scrap draft validated in Odoo", "machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty), "state", state)
		case e.d.Elsewhere != "" && !e.d.At.IsZero() && time.Since(e.d.At) > scrapDraftWatch:
			f.a.log.Warn("scrap draft left in an Odoo plantedge wrote to before no longer watched after a week: validate or delete it there",
				"machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty), "odoo", e.d.Elsewhere)
		case e.d.Elsewhere != "":
			if !e.d.NotHere {
				f.a.log.Warn("scrap draft left in the Odoo plantedge wrote to before, not in this one: validate or delete it there (it is looked at again if plantedge is pointed there)",
					"machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty), "odoo", e.d.Elsewhere)
				e.d.NotHere = true
				told = append(told, buffer.KV{Key: e.key, Value: mustJSON(e.d)})
			}
			waiting[e.machine] = append(waiting[e.machine], e.d)
			continue
		default:
			f.a.log.Warn("scrap draft deleted in Odoo: its pieces are not booked as scrap", "machine", e.machine, "xmlid", e.d.XMLID, "qty", num(e.d.Qty))
		}
		gone = append(gone, buffer.KV{Key: e.key})
	}
	if len(gone)+len(told) > 0 {
		if err := f.a.buf.PutMeta(ctx, append(gone, told...)...); err != nil {
			return err
		}
	}
	msgs := map[string]string{}
	for m, ds := range waiting {
		msgs[m] = scrapDraftsMessage(f.a.cfg.Load(), ds, "wait")
	}
	f.mu.Lock()
	f.drafts = msgs
	f.mu.Unlock()
	return nil
}

// revalidateScrap validates again a scrap draft Odoo refused to validate
// when it was booked: done, or the draft as it now stands (Odoo's new
// answer, or a draft for too little stock now) — stored when it changed.
// Only Odoo being away is an error.
func (f *forwarder) revalidateScrap(ctx context.Context, e storedScrapDraft) (scrapDraft, bool, error) {
	done, err := callFor(ctx, f, "validate_scrap", func(ctx context.Context) (bool, error) {
		return f.client.ValidateScrap(ctx, e.d.XMLID, f.a.cfg.Load().Odoo.ScrapWhenShort == "confirm")
	})
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
		return e.d, false, err
	}
	if err == nil && done {
		f.a.metrics.forwarded.WithLabelValues("scrap_count").Add(e.d.Qty)
		return e.d, true, nil
	}
	d := e.d
	d.Refused = ""
	if err != nil {
		d.Refused, _, _ = strings.Cut(err.Error(), "\n")
		f.a.log.Warn("odoo still refuses to validate a scrap draft", "machine", e.machine, "xmlid", d.XMLID, "err", err)
	}
	if d != e.d {
		if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: e.key, Value: mustJSON(d)}); err != nil {
			return e.d, false, err
		}
	}
	return d, false, nil
}

// storedScrapDraft is a watched scrap draft as stored: its meta key and
// machine.
type storedScrapDraft struct {
	key, machine string
	d            scrapDraft
}

// storedScrapDrafts are the scrap drafts being watched, in key order.
func storedScrapDrafts(buf *buffer.Queue) ([]storedScrapDraft, error) {
	var drafts []storedScrapDraft
	err := buf.MetaPrefix("scrapdraft/", func(key string, v []byte) error {
		var d scrapDraft
		if json.Unmarshal(v, &d) != nil {
			return nil // not this version's: left alone
		}
		machine, _, _ := strings.Cut(key[len("scrapdraft/"):], "/")
		drafts = append(drafts, storedScrapDraft{key, machine, d})
		return nil
	})
	return drafts, err
}

// scrapDraftsMessage is a machine's error for its scrap drafts in Odoo;
// verb is "wait" (just read) or "waited" (as the stopped agent last saw).
func scrapDraftsMessage(cfg *config.Config, ds []scrapDraft, verb string) string {
	hint := "validate them in Odoo (Inventory > Scrap Orders) or delete them there, or set odoo.scrap_when_short: confirm for later bookings"
	if cfg.Odoo.ScrapWhenShort == "confirm" {
		hint = "they predate odoo.scrap_when_short: confirm: validate them in Odoo (Inventory > Scrap Orders) or delete them there"
	}
	var short, refused, elsewhere []scrapDraft
	for _, d := range ds {
		switch {
		case d.Elsewhere != "" && d.NotHere:
			elsewhere = append(elsewhere, d)
		case d.Refused != "":
			refused = append(refused, d)
		default:
			short = append(short, d)
		}
	}
	sum := func(ds []scrapDraft) (qty float64) {
		for _, d := range ds {
			qty = decimal.Add(qty, d.Qty)
		}
		return qty
	}
	// "1 scrap booking of 2 waits as a draft", "2 scrap bookings of 3 in
	// all wait as drafts".
	some := func(ds []scrapDraft) string {
		if len(ds) == 1 {
			v := verb
			if v == "wait" {
				v = "waits"
			}
			return fmt.Sprintf("1 scrap booking of %s %s as a draft", Qty(sum(ds)), v)
		}
		return fmt.Sprintf("%d scrap bookings of %s in all %s as drafts", len(ds), Qty(sum(ds)), verb)
	}
	var msgs []string
	if len(elsewhere) > 0 {
		msgs = append(msgs, fmt.Sprintf("%s in the Odoo plantedge wrote to before (%s; first: %s), not in this one: "+
			"validate or delete %s there", some(elsewhere), elsewhere[0].Elsewhere, elsewhere[0].XMLID, OneOrMore(len(elsewhere) == 1, "it", "them")))
	}
	if len(refused) > 0 {
		msgs = append(msgs, fmt.Sprintf("%s in Odoo, which refused to validate %s (first: %s: %s); "+
			"fix that in Odoo, then validate %s there or run plantedge flush",
			some(refused), OneOrMore(len(refused) == 1, "it", "them"), refused[0].XMLID, refused[0].Refused, OneOrMore(len(refused) == 1, "it", "them")))
	}
	if len(short) > 0 {
		msgs = append(msgs, fmt.Sprintf("%s in Odoo (first: %s): too little stock at their source location; %s",
			some(short), short[0].XMLID, hint))
	}
	return strings.Join(msgs, "; and ")
}

// draftsSnapshot is what checkScrapDrafts last found, by machine.
func (f *forwarder) draftsSnapshot() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drafts
}

// scrapClear is a settled scrap booking: its outbox goes, its carry stays,
// and a draft it left in Odoo is watched from then on.
type scrapClear struct {
	machine  string
	carry    float64
	draft    *scrapDraft
	booked   *odoo.Scrap // what Odoo has, kept a while (see rebook.go), on the work order named bookedOn
	bookedOn string
}

// scrapCarry reads what is left over from a machine's last scrap booking.
func (f *forwarder) scrapCarry(machine string) (float64, error) {
	b, err := f.a.buf.Meta(scrapCarryKey(machine))
	if err != nil || b == nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= 1 {
		// Damaged on the disk (a carry is below Odoo's precision, at most
		// half a unit at 0 decimals): as if none — less than a unit of
		// scrap — rather than an error that stops every machine's
		// forwarding. Not the precision of now: a carry kept at 0 decimals
		// (up to 0.5) goes into the next booking after Odoo is set to keep
		// 2, instead of being dropped as damaged.
		f.a.eventLog.log("damaged carry "+machine, f.a.log, slog.LevelWarn,
			"the buffer file's scrap carry of this machine (what is left below Odoo's precision) cannot be read (damaged on the disk?): taken as none",
			"machine", machine, "value", string(b))
		return 0, nil
	}
	return v, nil
}
