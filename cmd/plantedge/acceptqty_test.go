package main

import (
	"strings"
	"testing"
)

// A count that went wrong (a jump) is corrected in Odoo; plantedge's next
// absolute write replaced the correction, with no way to keep it (the
// values probe). accept-qty keeps it: the pieces made since are added to
// the corrected quantity, on Odoo 17 (qty_producing) and 19 (qty_produced).
func TestAcceptQtyKeepsACorrectionInOdoo(t *testing.T) {
	for _, version := range []int{17, 19} {
		t.Run(map[int]string{17: "odoo17", 19: "odoo19"}[version], func(t *testing.T) {
			b := newBench(t, version)
			b.startAgent()
			defer b.stopAgent()

			// Nothing written yet: nothing to accept (exit 1, says why).
			out, err := cli(t, "accept-qty", "press-1", "-c", b.cfgPath)
			if exitCode(err) != 1 || !strings.Contains(err.Error(), "plantedge has written no quantity to WO press-1 yet") {
				t.Errorf("before any write: exit %d, %v\n%s", exitCode(err), err, out)
			}

			b.produce(10)
			b.waitQty()
			b.produce(9000) // a jump: another machine's value on the topic
			b.waitQty()
			// Odoo shows what plantedge wrote: nothing to accept.
			if out, err := cli(t, "accept-qty", "press-1", "-c", b.cfgPath); exitCode(err) != 1 || !strings.Contains(err.Error(), "Odoo shows what plantedge wrote") {
				t.Errorf("no edit: exit %d, %v\n%s", exitCode(err), err, out)
			}

			// The planner corrects the quantity; plantedge keeps it.
			b.odoo.SetWorkorderQty(b.woID, 12)
			out, err = cli(t, "accept-qty", "press-1", "-c", b.cfgPath)
			if err != nil || !strings.Contains(out, "press-1: work order WO press-1: the 12 in Odoo is kept (plantedge had written 9010)") {
				t.Fatalf("accept-qty: %v\n%s", err, out)
			}
			b.produce(5)
			b.start += 9010 - 12 // what the correction took off
			b.waitQty()          // 17
			if got := b.qty(); got != 17 {
				t.Errorf("after the correction and 5 pieces: %v, want 17", got)
			}

			// Unknown machine: refused by the agent.
			if _, err := cli(t, "accept-qty", "press-9", "-c", b.cfgPath); exitCode(err) != 4 || !strings.Contains(err.Error(), `machine "press-9"`) {
				t.Errorf("unknown machine: exit %d, %v", exitCode(err), err)
			}
		})
	}
}
