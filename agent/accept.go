package agent

import (
	"context"
	"fmt"

	"github.com/plantedge/plantedge/buffer"
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
	// to it by the next write.
	Accepted bool    `json:"accepted"`
	Was      float64 `json:"was"`
	Now      float64 `json:"now"`
	Pending  float64 `json:"pending"`
	// Note says why nothing was done.
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
	f.mu.Lock()
	if f.accept[machine] != nil {
		f.mu.Unlock()
		return AcceptResult{}, errAcceptBusy
	}
	if f.accept == nil {
		f.accept = map[string]*acceptReq{}
	}
	f.accept[machine] = req
	f.mu.Unlock()
	f.Flush()
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-ctx.Done():
		f.mu.Lock()
		if f.accept[machine] == req {
			delete(f.accept, machine)
			f.mu.Unlock()
			return AcceptResult{}, ctx.Err()
		}
		f.mu.Unlock()
		// Taken by a round under way: its answer is the one that counts.
		a := <-req.done
		return a.res, a.err
	}
}

// acceptAsked returns the machines an AcceptQty waits for.
func (f *forwarder) acceptAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := make([]string, 0, len(f.accept))
	for m := range f.accept {
		ms = append(ms, m)
	}
	return ms
}

// takeAccept returns the AcceptQty asked for machine, if any, and forgets it.
func (f *forwarder) takeAccept(machine string) *acceptReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := f.accept[machine]
	delete(f.accept, machine)
	return req
}

// serveAccept does an AcceptQty asked for machine, if any, where planCounts
// has read the work order in progress (wo, nil if none) and settled what
// was in flight; stored is the machine's stored state, updated in place.
// pending is the good pieces not yet written.
func (f *forwarder) serveAccept(ctx context.Context, machine string, wo *odoo.Workorder, stored *woState, pending float64) error {
	req := f.takeAccept(machine)
	if req == nil {
		return nil
	}
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
	qty := odoo.Round2(f.client.ProducedQty(*wo))
	res.Now = qty
	switch {
	case stored == nil || stored.ID != wo.ID:
		res.Note = fmt.Sprintf("plantedge has written no quantity to %s yet: the %g Odoo shows is where its counting starts", wo.Name, qty)
		return answer(nil)
	case stored.InFlight != nil:
		// A write Odoo does not show yet: the edit and the write cannot
		// be told apart until it settles.
		res.Was = stored.Written
		res.Note = fmt.Sprintf("a quantity write to %s (%g) is not settled yet: try again in a minute", wo.Name, stored.InFlight.Target)
		return answer(nil)
	}
	res.Was = stored.Written
	if qty == stored.Written {
		res.Note = fmt.Sprintf("Odoo shows what plantedge wrote to %s (%g): nothing to accept", wo.Name, qty)
		return answer(nil)
	}
	st := *stored
	// Baseline+Counted is what plantedge's writes hold; from now on Odoo's.
	st.Baseline, st.Written = qty-st.Counted, qty
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: woMetaKey(machine), Value: mustJSON(st)}); err != nil {
		return answer(err)
	}
	*stored = st
	res.Accepted = true
	f.a.log.Warn("the work order's quantity in Odoo was accepted as right: counting goes on from it",
		"machine", machine, "workorder", wo.Name, "odoo_qty", qty, "written_before", res.Was, "pending", pending)
	return answer(nil)
}
