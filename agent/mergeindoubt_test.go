package agent_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// The quota merge while an Odoo call is in doubt between rounds: the call
// landed but its answer was lost, the round ended (nothing it read is held
// any more), and the call settles the records up to its last one only in a
// later round, once Odoo shows it. A count merged meanwhile into one of
// those records would be settled with them, never sent (the agent's
// mergeCounts refuses that merge: records.go).

// inDoubtMergeWindow starts press-1 with the smallest quota; it makes 5
// pieces (in Odoo), then good pieces and scrap whose call Odoo commits and
// leaves unanswered (the first call of model.method from then on), Odoo
// going away as the answer is lost. While Odoo is away, stops fill the
// quota until it drops downtime records (every append then merges the count
// lane first); with restart the agent is then stopped and started again
// (what it had in flight is read back from the buffer file). Then the
// machine makes pieces (each of good and scrap), one stored before the
// next, until the quota merges count records; the test fails if it merges
// none. Odoo is still away when it returns.
func (p *plant) inDoubtMergeWindow(model, method string, good, scrap int64, restart bool) *runningAgent {
	p.t.Helper()
	p.setMaxBytes(int64(config.MinBufferBytes))
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 5, 0)
	p.waitExactQty(ra, "press-1", 5)
	var once sync.Once
	dropped := make(chan struct{})
	p.odoo.OnDrop(func(mo, me string) {
		if mo == model && me == method {
			once.Do(func() {
				p.odoo.SetDown(true) // from the lost answer on, until the test brings it back
				close(dropped)
			})
		}
	})
	p.odoo.FailNextCall(model, method, 1, odootest.FaultCommitThenDrop)
	p.produce(m, good, scrap)
	waitClosed(p.t, dropped, "the call left in doubt")
	p.stopsUntilDropped(ra, m) // a long outage: stops fill the quota
	// The stops still on their way taken (the pieces would wait behind
	// them), by the agent's count of the messages taken.
	p.waitPublishedTaken()
	if restart {
		ra.stopNow(p.t) // the call still in doubt
		ra = p.startAgentWith(false)
	}
	piece := func(n int64) int64 { return min(n, 1) }
	if !p.produceUntilMerged(ra, m, piece(good), piece(scrap), 300) {
		p.t.Fatalf("no count records merged while the call was in doubt (merged %d): the test no longer reaches its window", ra.a.Status().Buffer.Merged)
	}
	return ra
}

// A quantity write in doubt (8 in Odoo, its answer lost), pieces merged
// while Odoo is away, then the operator finishes the work order: the next
// round reads the old order back, sees the 8 and settles the write's
// records for it. A piece merged into those records would be in neither
// order. (On the same order it is written with the next quantity: its
// count goes into the state's Counted with the records acknowledged, see
// woState; the order's change is what loses it.)
func TestGoodMergedWhileItsWriteIsInDoubtThenWorkOrderChange(t *testing.T) {
	t.Parallel()
	goodMergedWhileInDoubt(t, false)
}

// The same with the agent restarted while the write is in doubt: its
// in-flight mark is read back from the buffer file before anything is
// appended.
func TestGoodMergedAfterARestartWithAWriteInDoubt(t *testing.T) {
	t.Parallel()
	goodMergedWhileInDoubt(t, true)
}

func goodMergedWhileInDoubt(t *testing.T, restart bool) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.scrapBacklog = 10 * time.Minute // the window's pieces go to the order in progress however long it lasts
	ra := p.inDoubtMergeWindow("mrp.workorder", "write", 3, 0, restart)
	m := p.machines[0]
	first := p.woIDs["press-1"]
	if q := p.odoo.Workorder(first).QtyProducing; q != 8 {
		t.Fatalf("the write in doubt did not land: %v in Odoo, want 8", q)
	}
	next := p.nextWorkorder("press-1", 500)
	p.odoo.SetDown(false)
	ra.a.Flush()
	inOdoo := func() float64 {
		return p.odoo.Workorder(first).QtyProducing + p.odoo.Workorder(next).QtyProducing
	}
	// Every piece was stored before Odoo came back (inDoubtMergeWindow).
	waitFor(t, 60*time.Second, "the buffer drained", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Pending == 0, fmt.Sprintf("pending %d, in Odoo %v of %v (merged %d)", st.Buffer.Pending, inOdoo(), m.made(), st.Buffer.Merged)
	})
	p.waitRoundsPass(ra, 2, "after the split") // a double write would land meanwhile
	q1, q2 := p.odoo.Workorder(first).QtyProducing, p.odoo.Workorder(next).QtyProducing
	if q1 != 8 || q1+q2 != m.made() {
		st := ra.a.Status().Buffer
		t.Fatalf("first order %v (want 8) + second %v = %v in Odoo, machine made %v (merged %d, dead letters %d)", q1, q2, q1+q2, m.made(), st.Merged, st.DeadLetters)
	}
}

// A scrap booking in doubt (validated in Odoo, the answer lost), scrap
// merged while Odoo is away: the next round books the outbox again (Odoo
// has it, done) and settles its records; scrap merged into them would
// never be booked.
func TestScrapMergedWhileItsBookingIsInDoubt(t *testing.T) {
	t.Parallel()
	scrapMergedWhileInDoubt(t, false)
}

// The same with the agent restarted while the booking is in doubt.
func TestScrapMergedAfterARestartWithABookingInDoubt(t *testing.T) {
	t.Parallel()
	scrapMergedWhileInDoubt(t, true)
}

func scrapMergedWhileInDoubt(t *testing.T, restart bool) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.inDoubtMergeWindow("stock.scrap", "action_validate", 0, 3, restart)
	m := p.machines[0]
	if got := p.scrapped("press-1"); got != 3 {
		t.Fatalf("the booking in doubt did not land: %v scrapped in Odoo, want 3", got)
	}
	p.odoo.SetDown(false)
	ra.a.Flush()
	scrapped := func() float64 { // by the machine
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(m.scrap)
	}
	// Every piece was stored before Odoo came back (inDoubtMergeWindow).
	waitFor(t, 60*time.Second, "the buffer drained", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Pending == 0, fmt.Sprintf("pending %d, scrapped in Odoo %v of %v (merged %d)", st.Buffer.Pending, p.scrapped("press-1"), scrapped(), st.Buffer.Merged)
	})
	p.waitRoundsPass(ra, 2, "after the booking") // a double booking would land meanwhile
	if got, want := p.scrapped("press-1"), scrapped(); got != want {
		st := ra.a.Status().Buffer
		t.Fatalf("scrapped in Odoo %v, machine scrapped %v (merged %d, dead letters %d)", got, want, st.Merged, st.DeadLetters)
	}
	if got := p.qty("press-1"); got != m.made() {
		t.Fatalf("%v pieces in Odoo, machine made %v", got, m.made())
	}
}
