package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
)

// A planner corrects the quantity of a running machine's order in Odoo:
// the next round writes over it, before anyone can run accept-qty, which
// then said "Odoo shows what plantedge wrote: nothing to accept" (the
// work-order probe). accept-qty takes the replaced entry back, with the
// pieces counted since; status says what happened, and no more once it is
// accepted.
func TestEditWrittenOverCanBeTakenBack(t *testing.T) {
	odoo17And19(t, func(t *testing.T, v int) {
		p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
		ra := p.startAgent()
		m := p.machines[0]
		wo := p.woIDs["press-1"]
		p.produce(m, 10, 0)
		p.waitExactQty(ra, "press-1", 10)
		p.odoo.SetWorkorderQty(wo, 500) // the planner's correction
		p.produce(m, 3, 0)              // the machine runs on
		p.waitExactQty(ra, "press-1", 13)
		if e := machineStatus(ra, "press-1").Error; !strings.Contains(e, "showed 500 in Odoo where plantedge had written 10") ||
			!strings.Contains(e, "accept-qty press-1 takes it back") {
			t.Errorf("status after the write over the edit: %q", e)
		}
		res, err := agent.NewAPIClient(p.listen).AcceptQty(context.Background(), "press-1")
		if err != nil || !res.Accepted || res.Now != 503 || !strings.Contains(res.Note, "took back the 500") {
			t.Fatalf("accept-qty: %+v, %v; want the 500 taken back, 503 with the 3 made since", res, err)
		}
		waitFor(t, 10*time.Second, "the correction in Odoo", func() (bool, string) {
			q := p.woQty(wo)
			return q == 503, fmt.Sprintf("%v", q)
		})
		if e := machineStatus(ra, "press-1").Error; e != "" {
			t.Errorf("status after accept-qty: %q", e)
		}
		p.produce(m, 2, 0)
		waitFor(t, 10*time.Second, "the next pieces on it", func() (bool, string) {
			q := p.woQty(wo)
			return q == 505, fmt.Sprintf("%v", q)
		})
		// Taken back once: asked again, nothing to accept.
		if res, err := agent.NewAPIClient(p.listen).AcceptQty(context.Background(), "press-1"); err != nil || res.Accepted {
			t.Errorf("accept-qty again: %+v, %v; want nothing to accept", res, err)
		}
	})
}

// A quantity entered in Odoo after plantedge began on the order (a stop
// booked: a round looked at it) but before its first piece there is where
// counting starts, as one entered before plantedge began is; the first
// pieces wrote over it without a word (the work-order probe: 40, then 5
// made, showed 5).
func TestEntryBeforeTheFirstPieceIsCountedOn(t *testing.T) {
	odoo17And19(t, func(t *testing.T, v int) {
		p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
		ra := p.startAgent()
		m := p.machines[0]
		wo := p.woIDs["press-1"]
		p.stop(m, "JAM")
		time.Sleep(200 * time.Millisecond)
		p.run(m)
		p.waitLines(1)
		p.waitPending(ra, 0)
		p.odoo.SetWorkorderQty(wo, 40)
		p.produce(m, 5, 0)
		waitFor(t, 10*time.Second, "the pieces on the entry", func() (bool, string) {
			q := p.woQty(wo)
			return q == 45, fmt.Sprintf("%v", q)
		})
		if !strings.Contains(p.logs.String(), "a quantity was entered in Odoo on the work order before plantedge wrote a piece to it") {
			t.Error("the entry counted on is not logged")
		}
	})
}

// odoo17And19 runs f against Odoo 17 and 19, each a subtest.
func odoo17And19(t *testing.T, f func(t *testing.T, v int)) {
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprintf("odoo%d", v), func(t *testing.T) { f(t, v) })
	}
}
