package agent_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// A buffer file older than what was booked in Odoo sends nothing, not only
// in the round that found it: every later round is refused too (the check
// is made once a run), until the file is moved aside.
func TestRestoredBufferFileSendsNothingInLaterRounds(t *testing.T) {
	t.Parallel()
	p, m, _ := restoredBufferFile(t)
	scrap := p.scrapTotal

	ra := p.startAgentWith(false)
	defer ra.stopNow(t)
	p.produce(m, 1, 1)
	waitFor(t, 15*time.Second, "the restored file refused", func() (bool, string) {
		st := ra.a.Status()
		return strings.Contains(st.Odoo.LastError, "is older than what was booked in Odoo"), st.Odoo.LastError
	})
	refusedAt := ra.a.Status().Odoo.RoundsDone
	waitFor(t, 30*time.Second, "three more rounds", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return st.Odoo.RoundsDone >= refusedAt+3, st.Odoo.LastError
	})
	if got, q := scrap(), p.qty("press-1"); got != 4 || q != 8 {
		t.Errorf("later rounds sent from the restored file: scrap %g (want 4), quantity %g (want 8)", got, q)
	}
	if st := ra.a.Status(); !strings.Contains(st.Odoo.LastError, "is older than what was booked in Odoo") {
		t.Errorf("later rounds no longer say the file is restored: %q", st.Odoo.LastError)
	}
}

// A quantity write Odoo answers with MissingError (the work order deleted
// between the lookup and the write, or not readable for a moment) moves
// nothing to the dead letters: the counts wait for the work order the next
// round finds, and are booked there.
func TestQuantityWriteOnAMissingWorkOrderKeepsItsCounts(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1"}})
	ra := p.startAgent()
	defer ra.stopNow(t)
	m := p.machines[0]
	p.produce(m, 3, 0)
	p.waitExactQty(ra, "press-1", 3)
	p.odoo.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.MissingError", "Record does not exist or has been deleted.")
	p.produce(m, 4, 0)
	waitFor(t, 15*time.Second, "the 4 pieces booked after the refusal", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return p.qty("press-1") == 7, fmt.Sprintf("quantity %g (want 7), %d dead letters %s", p.qty("press-1"), st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	})
	if !strings.Contains(p.logs.String(), "work order missing; re-resolving") {
		t.Error("the refusal as missing was not met (nothing logged)")
	}
	if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
		t.Errorf("%d dead letters (%s); want none: a missing work order is no refusal of the counts", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}
}

// On Odoo 19 qty_produced is the work order's own: a machine moving on to
// the next operation of the same manufacturing order counts on from what
// that work order shows (an operator's entry), not from 0 as on 17/18,
// where qty_producing is the order's and holds the last operation's count.
func TestNextOperationOnOdoo19CountsOnFromItsOwnQuantity(t *testing.T) {
	t.Parallel()
	p, ra, m, op1, op2 := nextOperation(t, 19)
	defer ra.stopNow(t)
	p.adminCall("mrp.workorder", "write", []any{[]any{op2}, map[string]any{"qty_produced": 5}}, nil)
	p.produce(m, 15, 0)
	waitFor(t, 15*time.Second, "op2's count", func() (bool, string) {
		q := p.odoo.Workorder(op2).QtyProduced
		return q == 20, fmt.Sprintf("op2 qty_produced %v, want 5 entered + 15 counted", q)
	})
	if q := p.odoo.Workorder(op1).QtyProduced; q != 20 {
		t.Errorf("op1 qty_produced %v, want 20", q)
	}
}

// A scrap booking that fails for a moment (a proxy's 502, Odoo's database
// away) is booked again with its outbox, under the same external id: its
// records never go to the dead letters, and the scrap is booked once.
func TestScrapBookingFailingForAMomentIsBookedOnce(t *testing.T) {
	t.Parallel()
	for _, fault := range []odootest.Fault{odootest.FaultHTTP502, odootest.FaultDatabaseDown} {
		t.Run(fault.String(), func(t *testing.T) {
			t.Parallel()
			p := newPlant(t, plantOptions{machines: []string{"press-1"}})
			ra := p.startAgent()
			defer ra.stopNow(t)
			m := p.machines[0]
			p.produce(m, 2, 1)
			p.waitExact(ra, 15*time.Second)
			p.odoo.FailNextCall("stock.scrap", "load", 1, fault)
			p.produce(m, 1, 3)
			waitFor(t, 15*time.Second, "the second scrap booked", func() (bool, string) {
				ra.a.Flush()
				var qty float64
				for _, s := range p.odoo.Scraps() {
					if s.State == "done" {
						qty += s.Qty * float64(s.Moves)
					}
				}
				st := ra.a.Status()
				return qty == 4, fmt.Sprintf("scrap booked %g (want 4), %d dead letters %s", qty, st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			})
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters (%s); want none", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
			if n := len(p.odoo.Scraps()); n != 2 {
				t.Errorf("%d scraps in Odoo, want 2", n)
			}
		})
	}
}

// A crash (kill -9) while Odoo holds a downtime line's load: the next start
// sends nothing before that load can no longer commit, as after a quantity
// write — the load's own requests store the mark (no quantity write of its
// round does), else the late opening could overtake the close sent after
// the start and block the work center again.
func TestCrashDuringADowntimeLoadMakesTheNextStartWait(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
	p.requestLimit("8s")
	came, ran := p.holdFirst("mrp.workcenter.productivity", "load", 6*time.Second)
	child := agenttest.StartChild(t, p.cfgPath)
	defer func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() }()
	api := agent.NewAPIClient(p.listen)
	waitChildSubscribed(t, api)
	m, wc := p.machines[0], p.wcIDs["press-1"]
	p.publish(m) // the baseline
	waitFor(t, 30*time.Second, "the baseline", func() (bool, string) {
		st, err := api.Status(context.Background())
		return err == nil && st.Machines[0].State != "unknown", fmt.Sprint(err)
	})
	p.stop(m, "JAM")
	waitClosed(t, came, "the opening's load")
	_ = child.Process.Signal(syscall.SIGKILL)
	_, _ = child.Process.Wait()
	ra := p.startAgentWith(false)
	defer ra.stopNow(t)
	// The hold is the forwarder's, which starts beside the sources: shown
	// once it has taken it up, not necessarily by the time the sources
	// are connected.
	waitFor(t, 10*time.Second, "the start's hold shown", func() (bool, string) {
		o := ra.a.Status().Odoo
		return o.SettleSeconds > 0, fmt.Sprintf("%+v", o)
	})
	if o := ra.a.Status().Odoo; o.SettleSeconds <= 0 {
		t.Errorf("the start after a crash during a downtime load does not wait for it: %+v", o)
	}
	p.run(m)
	waitClosed(t, ran, "the held opening")
	waitFor(t, 20*time.Second, "line closed", func() (bool, string) {
		l := p.odoo.Productivity()
		return len(l) == 1 && !l[0].End.IsZero() && p.odoo.WorkingState(wc) == "normal" && ra.a.Status().Buffer.Pending == 0,
			fmt.Sprintf("%+v %s", l, p.odoo.WorkingState(wc))
	})
}

// A quantity write Odoo refuses for good dead-letters that machine's
// records only: another machine's counts waiting in the same stretch of
// the lane are booked on its own work order, and counted on from there.
func TestRefusedWriteDeadLettersOnlyItsMachinesCounts(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2"}})
	ra := p.startAgent()
	defer ra.stopNow(t)
	m1, m2 := p.machines[0], p.machines[1]
	p.produce(m1, 1, 0)
	p.produce(m2, 1, 0)
	p.waitExactQty(ra, "press-1", 1)
	p.waitExactQty(ra, "press-2", 1)
	p.odoo.SetDown(true)
	p.produce(m2, 5, 0) // older in the lane than press-1's
	p.produce(m1, 4, 0)
	waitFor(t, 10*time.Second, "both buffered", func() (bool, string) {
		n := ra.a.Status().Buffer.Pending
		return n >= 2, fmt.Sprint(n)
	})
	p.odoo.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.ValidationError", "The quantity is refused by a rule")
	p.odoo.SetDown(false)
	waitFor(t, 15*time.Second, "press-2's pieces booked, press-1's dead-lettered", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return p.qty("press-2") == 6 && st.Buffer.DeadLetters == 1 && st.Buffer.Pending == 0,
			fmt.Sprintf("press-1 %g press-2 %g, %d dead letters, %d pending", p.qty("press-1"), p.qty("press-2"), st.Buffer.DeadLetters, st.Buffer.Pending)
	})
	p.produce(m2, 2, 0)
	p.waitExactQty(ra, "press-2", 8)
	if q := p.qty("press-1"); q != 1 {
		t.Errorf("press-1 %g, want 1 (its 4 in the dead letters)", q)
	}
}

// The look at whether the buffer file is older than what was booked in
// Odoo, failing for a moment (Odoo's database away), is made again: a
// restored file is still found and sends nothing — only a refusal for good
// (the bot may not read external ids) gives up the check for the run.
func TestRestoreCheckFailingForAMomentIsMadeAgain(t *testing.T) {
	t.Parallel()
	p, m, _ := restoredBufferFile(t)
	scrap := p.scrapTotal

	p.odoo.FailNextCall("ir.model.data", "search_read", 1, odootest.FaultDatabaseDown)
	ra := p.startAgentWith(false)
	defer ra.stopNow(t)
	p.produce(m, 1, 1)
	waitFor(t, 20*time.Second, "the restored file refused", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return strings.Contains(st.Odoo.LastError, "is older than what was booked in Odoo"),
			fmt.Sprintf("%q; scrap %g quantity %g", st.Odoo.LastError, scrap(), p.qty("press-1"))
	})
	if got, q := scrap(), p.qty("press-1"); got != 4 || q != 8 {
		t.Errorf("sent from the restored file: scrap %g (want 4), quantity %g (want 8)", got, q)
	}
}

// A downtime line in Odoo stamped ahead of this box's clock (booked by a box
// whose source clock ran ahead) says nothing of this buffer file's age: the
// agent does not take its file for a restored one, and books on.
func TestLineStampedAheadOfThisClockIsNoRestore(t *testing.T) {
	t.Parallel()
	p, ra, m := oneStopBooked(t)
	ra.stopNow(t)
	line := p.odoo.Productivity()[0]
	s := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	row := []any{fmt.Sprintf("plantedge.test-plant_press-1_downtime_%d", s.UnixMilli()),
		fmt.Sprint(line.WorkcenterID), "", fmt.Sprint(line.LossID), s.Format(time.DateTime), s.Add(2 * time.Second).Format(time.DateTime), "plantedge"}
	p.adminCall("mrp.workcenter.productivity", "load", []any{[]any{"id", "workcenter_id/.id", "workorder_id/.id", "loss_id/.id", "date_start", "date_end", "description"}, []any{row}},
		map[string]any{"context": map[string]any{"tz": "UTC"}})
	ra = p.startAgentWith(false)
	defer ra.stopNow(t)
	p.produce(m, 2, 0)
	waitFor(t, 15*time.Second, "the 2 pieces booked", func() (bool, string) {
		st := ra.a.Status()
		return p.qty("press-1") == 7, fmt.Sprintf("quantity %g (want 7); %q", p.qty("press-1"), st.Odoo.LastError)
	})
	if st := ra.a.Status(); st.Odoo.LastError != "" {
		t.Errorf("odoo last error %q", st.Odoo.LastError)
	}
}

// Once the stop began, no Odoo call begins: a stop during a round's first
// quantity write lets that write finish and sends none of the round's
// others (each could be cut by the stop timeout, left in doubt, and hold
// the next start back).
func TestStopDuringARoundSendsNoFurtherWrite(t *testing.T) {
	t.Parallel()
	p, writes := stoppedDuringAWrite(t)
	if n := p.odoo.CallCount("mrp.workorder", "write") - writes; n != 1 {
		t.Errorf("%d quantity writes sent during the round the stop came in, want 1 (the one in progress)", n)
	}
	ra := p.startAgentWith(false)
	defer ra.stopNow(t)
	p.waitExact(ra, 20*time.Second)
}

// A stop whose loss reason cannot be looked up for a moment (Odoo's
// database away) waits and is booked: only a loss reason Odoo refuses for
// good sends the stop to the dead letters.
func TestLossLookupFailingForAMomentKeepsTheStop(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	defer ra.stopNow(t)
	m := p.machines[0]
	p.produce(m, 2, 0)
	p.waitExactQty(ra, "press-1", 2)
	p.odoo.FailNextCall("mrp.workcenter.productivity.loss", "search_read", 1, odootest.FaultDatabaseDown)
	p.stop(m, "JAM")
	p.run(m)
	waitFor(t, 15*time.Second, "the stop booked", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return len(p.odoo.Productivity()) == 1 && st.Buffer.Pending == 0,
			fmt.Sprintf("%d lines, %d pending, %d dead letters %s", len(p.odoo.Productivity()), st.Buffer.Pending, st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	})
	if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
		t.Errorf("%d dead letters (%s); want none", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}
	if c := p.odoo.CallCount("mrp.workcenter.productivity.loss", "search_read"); c < 2 {
		t.Errorf("the loss reason was looked up %d times: the fault did not meet the lookup", c)
	}
}
