package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo"
)

// Keeping a quantity corrected in Odoo. plantedge writes a work order's
// quantity as an absolute value (what it had when counting began plus what
// plantedge counted), so a person's correction in Odoo is replaced by the
// next write — right when the edit came from a stale copy of this agent, and
// wrong when a person corrects a count that is wrong (a jump: another
// machine's value published on the counter's topic, a preset). Which one
// it is the agent cannot tell; a person can: AcceptQty takes the quantity
// Odoo shows on the machine's work order as right, and counting goes on
// from it (the values probe: a correction was written over at the next
// piece, with no way to keep it).

// AcceptResult is what AcceptQty did.
type AcceptResult struct {
	Machine   string `json:"machine"`
	WorkOrder string `json:"work_order,omitempty"`
	// Accepted: Odoo's quantity (Now) is taken as right, in place of what
	// plantedge had written (Was); Pending pieces not yet in Odoo are added
	// to it by the next write. Or, with a Note: a quantity edited in Odoo
	// that plantedge's write had replaced (within replacedHold) is taken
	// back, with the pieces counted since; Now is what the next write sets
	// (before Pending), Was what Odoo shows.
	Accepted bool    `json:"accepted"`
	Was      float64 `json:"was"`
	Now      float64 `json:"now"`
	Pending  float64 `json:"pending"`
	// Note says why nothing was done, or what was taken back.
	Note string `json:"note,omitempty"`
}

// acceptReq is an AcceptQty asked of the forwarder's loop, done by the
// next round that looks at the machine's work order.
type acceptReq struct {
	done chan acceptAnswer // buffered: the loop never waits on it
}

type acceptAnswer struct {
	res AcceptResult
	err error
}

// errAcceptBusy: another request for the machine waits to be done.
var errAcceptBusy = fmt.Errorf("a request to accept this machine's quantity in Odoo is already waiting")

// AcceptQty asks the forwarder to take the quantity Odoo shows on the work
// order in progress on machine's work center as right (see above), and
// waits for the round that does it.
func (f *forwarder) AcceptQty(ctx context.Context, machine string) (AcceptResult, error) {
	req := &acceptReq{done: make(chan acceptAnswer, 1)}
	if err := f.queueAccept(machine, req); err != nil {
		return AcceptResult{}, err
	}
	f.Flush()
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-ctx.Done():
	}
	// Withdrawn if no round holds it; a round under way that took it
	// answers (or hands it back to the next round: withdrawn then). Not
	// forever: a stopping agent's last round may not come back.
	giveUp := time.Now().Add(acceptGrace)
	for {
		f.mu.Lock()
		if f.accept[machine] == req {
			delete(f.accept, machine)
			f.mu.Unlock()
			return AcceptResult{}, ctx.Err()
		}
		f.mu.Unlock()
		select {
		case a := <-req.done:
			return a.res, a.err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(giveUp) {
			return AcceptResult{}, errAcceptPending
		}
	}
}

// errAcceptPending: a round holds the request and has not answered in
// time; it may still do it (the re-review's M3: "nothing was changed", and
// the correction was accepted 5 s later).
var errAcceptPending = errors.New("a forwarding round took the request but has not answered in time (Odoo slow?): it may still be done — " +
	"the agent's log says \"the work order's quantity in Odoo was accepted\" if it was; run this again to see")

// acceptGrace is how long AcceptQty, its caller gone, waits for a round
// that holds its request (a variable for the tests).
var acceptGrace = 15 * time.Second

// takeAccepts returns the AcceptQty requests waiting, for the round that
// starts, and forgets them: those asked later wait for the next round (the
// review: one asked while a round ran for other machines was answered
// "work center not known").
func (f *forwarder) takeAccepts() map[string]*acceptReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	reqs := f.accept
	f.accept = nil
	return reqs
}

// requeueAccept hands the round's request for machine to the next round,
// unless a newer one waits there (that one is answered; this one, busy).
func (f *forwarder) requeueAccept(machine string) {
	req := f.roundAccepts[machine]
	delete(f.roundAccepts, machine)
	if err := f.queueAccept(machine, req); err != nil {
		req.done <- acceptAnswer{err: err}
	}
}

// queueAccept puts req for machine before the next round: errAcceptBusy
// when one waits there already, errAgentStopping once no round will come.
func (f *forwarder) queueAccept(machine string, req *acceptReq) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.stopping:
		return errAgentStopping
	case f.accept[machine] != nil:
		return errAcceptBusy
	}
	if f.accept == nil {
		f.accept = map[string]*acceptReq{}
	}
	f.accept[machine] = req
	return nil
}

// failAcceptsLocked answers the accept-qty requests waiting for a round
// (f.mu held): the attempt that failed with err (Odoo not reached, most
// often) did not get to them, so nothing was changed.
func (f *forwarder) failAcceptsLocked(err error) {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	for machine, req := range f.accept {
		req.done <- acceptAnswer{res: AcceptResult{Machine: machine},
			err: fmt.Errorf("%w: %s; nothing was changed: run it again once plantedge status says odoo online", errRoundFailed, msg)}
	}
	f.accept = nil
}

// errRoundFailed: the forwarding round failed (on Odoo, most often) before
// it got to an accept-qty request.
var errRoundFailed = errors.New("the forwarding round failed before it reached the machine")

// errAcceptNotReached: the round that took the request ended before it
// got to the machine.
var errAcceptNotReached = errors.New("the forwarding round ended before it reached the machine (plantedge status says why: Odoo offline?): nothing was changed; try again")

// answerAccepts answers the round's requests it did not serve: a machine
// whose work center Odoo lacks (served), else with err.
func (f *forwarder) answerAccepts(served map[string]bool, err error) {
	cfg := f.a.cfg.Load()
	for id, req := range f.roundAccepts {
		res := AcceptResult{Machine: id}
		switch {
		case findMachine(cfg, id) == nil: // (removed by a reload since it was asked)
			res.Note = "no such machine in the configuration the agent runs"
		case served[id]:
			res.Note = "the machine's work center is not known in Odoo: nothing to accept (plantedge status shows why)"
		default:
			req.done <- acceptAnswer{res: res, err: err}
			continue
		}
		req.done <- acceptAnswer{res: res}
	}
	f.roundAccepts = nil
}

// serveAccept does an AcceptQty asked for machine, if any, where planCounts
// has read the work order in progress (wo, nil if none) and settled what
// was in flight; stored is the machine's stored state, updated in place.
// pending is the good pieces not yet written.
func (f *forwarder) serveAccept(ctx context.Context, machine string, wo *odoo.Workorder, stored *woState, pending float64) error {
	req := f.roundAccepts[machine]
	if req == nil {
		return nil
	}
	delete(f.roundAccepts, machine)
	res := AcceptResult{Machine: machine, Pending: pending}
	answer := func(err error) error {
		req.done <- acceptAnswer{res, err}
		return err
	}
	if wo == nil {
		res.Note = "no work order is in progress on the machine's work center: nothing to accept (plantedge status shows why)"
		return answer(nil)
	}
	res.WorkOrder = wo.Name
	qty := f.client.RoundQty(f.client.ProducedQty(*wo))
	res.Now = qty
	if wo.SerialProducing(f.client.Major()) {
		// Odoo keeps 1 there whatever is written: no correction of
		// anyone's (accepted, it became plantedge's count).
		res.Note = fmt.Sprintf("%s is of a product tracked by serial number: Odoo %d keeps its quantity producing at 1 whatever is written, "+
			"so the %s it shows is no correction: nothing to accept", wo.Name, f.client.Major(), Qty(qty))
		return answer(nil)
	}
	_, startDefault := f.client.StartingQty(*wo)
	fresh := stored != nil && stored.ID == wo.ID && stored.InFlight == nil && stored.Written == stored.Baseline && stored.Counted == 0
	switch {
	case stored == nil || stored.ID != wo.ID:
		// Not counted on yet: when it is, Odoo's quantity is where
		// counting starts (an operator's entry too), unless it is Odoo
		// 17/18's start default.
		res.Note = fmt.Sprintf("plantedge has not counted on %s yet: when it begins, it counts on from the %s Odoo shows "+
			"(on Odoo 17/18 from 0 when that is what starting the order set, or the count of the manufacturing order's operation before): nothing to accept", wo.Name, Qty(qty))
		return answer(nil)
	case fresh && (startDefault || stored.Zeroed == "start" && qty == stored.ZeroedFrom):
		// The review: the start default of 100,000 was accepted, and 3
		// pieces made 100,003. (Zeroed: also after the MO's quantity
		// changed, which the live test no longer shows.)
		res.Note = fmt.Sprintf("Odoo shows the quantity starting %s set (the remaining quantity, %s), which counting does not start from: "+
			"nothing to accept; once plantedge has written to it, correct the quantity and run this again", wo.Name, Qty(qty))
		return answer(nil)
	case fresh && stored.Zeroed == "next_op" && qty == stored.ZeroedFrom:
		// The manufacturing order's operation before's count, which this
		// one counts from 0 (qty_producing is the order's on 17/18).
		res.Note = fmt.Sprintf("on Odoo 17/18 the %s on %s is the count of the manufacturing order's operation before, "+
			"which this one does not count from: nothing to accept; once plantedge has written to it, correct the quantity and run this again", Qty(qty), wo.Name)
		return answer(nil)
	case stored.InFlight != nil:
		// A write Odoo does not show yet: the edit and the write cannot
		// be told apart — its pieces may be in the correction or not. The
		// write is made again now (absolute), over the correction.
		res.Was = stored.Written
		res.Note = fmt.Sprintf("a quantity write to %s (%s) had no answer from Odoo, so a correction cannot be told from it: plantedge "+
			"writes it again now; once Odoo shows it, correct the quantity again and run this again", wo.Name, Qty(stored.InFlight.Target))
		return answer(nil)
	}
	res.Was = stored.Written
	if r := stored.Replaced; f.sameQty(qty, stored.Written) && r != nil && r.Qty != r.Over && time.Since(r.At) < replacedHold {
		// The edit was written over before anyone could accept it (a
		// running machine's next round): taken back, and the pieces
		// counted since are added to it.
		st := *stored
		st.Baseline, st.Replaced = decimal.Sub(r.Qty, r.Counted), nil
		if err := f.a.buf.PutMeta(ctx, woStateKV(machine, st)); err != nil {
			return answer(err)
		}
		*stored = st
		res.Accepted, res.Now = true, f.client.RoundQty(decimal.Add(st.Baseline, st.Counted))
		res.Note = fmt.Sprintf("took back the %s Odoo showed on %s at %s UTC (entered there, or written by another copy of this agent), which plantedge's write had replaced: "+
			"counting goes on from it — %s with the %s counted since", Qty(r.Qty), wo.Name, r.At.Format(time.DateTime), Qty(res.Now), Pieces(f.client.RoundQty(decimal.Sub(st.Counted, r.Counted)), ""))
		f.clearEditError(machine)
		f.a.log.Warn("a quantity edited in Odoo, which plantedge had written over, was accepted as right: counting goes on from it",
			"machine", machine, "workorder", wo.Name, "edited_qty", num(r.Qty), "edited_at", r.At, "counted_since", num(decimal.Sub(st.Counted, r.Counted)), "next_write", num(res.Now), "pending", pending)
		return answer(nil)
	}
	if f.sameQty(qty, stored.Written) {
		res.Note = fmt.Sprintf("Odoo shows what plantedge wrote to %s (%s): nothing to accept", wo.Name, Qty(qty))
		if r := stored.Replaced; r != nil && r.Qty != r.Over {
			res.Note += fmt.Sprintf(" (the %s Odoo showed at %s UTC, which plantedge wrote over, is more than an hour old: correct the quantity again, "+
				"and run this before the machine's next piece — or stop it first)", Qty(r.Qty), r.At.Format(time.DateTime))
		}
		if fresh {
			res.Note = fmt.Sprintf("Odoo shows the %s plantedge counts on %s from: nothing to accept", Qty(qty), wo.Name)
		}
		return answer(nil)
	}
	st := *stored
	// Baseline+Counted is what plantedge's writes hold; from now on Odoo's.
	st.Baseline, st.Written, st.Replaced = decimal.Sub(qty, st.Counted), qty, nil
	if err := f.a.buf.PutMeta(ctx, woStateKV(machine, st)); err != nil {
		return answer(err)
	}
	*stored = st
	res.Accepted = true
	f.clearEditError(machine)
	f.a.log.Warn("the work order's quantity in Odoo was accepted as right: counting goes on from it",
		"machine", machine, "workorder", wo.Name, "odoo_qty", num(qty), "written_before", num(res.Was), "pending", pending)
	return answer(nil)
}

// editedMarker is in the machine's message of an edit in Odoo
// (noteLateOrEdited), which clearEditError drops.
const editedMarker = " in Odoo where plantedge had written "

// clearEditError drops the machine's message of an edit in Odoo, once
// accepted.
func (f *forwarder) clearEditError(machine string) {
	f.setMachine(machine, func(ml *machineLink) {
		if strings.HasPrefix(ml.Error, "work order ") && strings.Contains(ml.Error, editedMarker) {
			ml.Error = ""
		}
	})
}
