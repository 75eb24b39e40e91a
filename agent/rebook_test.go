package agent_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// Odoo's database restored from a backup (an upgrade rolled back): the
// downtime lines and scrap booked since are gone from Odoo, and the buffer
// has forgotten their records. `plantedge rebook` books again what Odoo
// confirmed since and lacks now — only that, once — and a line still open
// closes when its stop ends; the quantities come back with the next write.
func TestRebookAfterOdooRestoredFromBackup(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2"}, block: true})
	t.Cleanup(agent.SetBookedCheck(2, 0)) // put back after the agent stopped
	ra := p.startAgent()
	m1, m2 := p.machines[0], p.machines[1]
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	closed := func(n int) {
		t.Helper()
		waitFor(t, 15*time.Second, fmt.Sprintf("%d closed lines", n), func() (bool, string) {
			got := p.closedLines("press-1")
			return got == n, fmt.Sprint(got)
		})
	}
	// Before the backup: a stop, pieces, and a stop going on (press-2's
	// line open).
	p.produce(m1, 10, 0)
	p.stop(m1, "JAM")
	p.waitLines(1)
	p.run(m1)
	closed(1)
	p.waitExactQty(ra, "press-1", 10)
	p.stop(m2, "JAM")
	p.waitLines(2)
	backup := p.odoo.Backup()
	backupAt := time.Now()
	// Its end comes after the backup: the restored database has the line
	// open (the self-probe: its work center blocked for good).
	p.run(m2)
	waitFor(t, 15*time.Second, "press-2's line closed", func() (bool, string) {
		n := p.closedLines("press-2")
		return n == 1, fmt.Sprint(n)
	})

	// Since: a stop over, scrap, pieces, and a stop going on (its line open).
	p.produce(m1, 5, 0)
	p.stop(m1, "JAM")
	p.waitLines(3)
	p.run(m1)
	closed(2)
	p.produce(m2, 7, 3)
	waitFor(t, 15*time.Second, "scrap", func() (bool, string) { return p.scrapped("press-2") == 3, fmt.Sprint(p.scrapped("press-2")) })
	p.stop(m1, "SETUP")
	p.waitLines(4)
	p.waitExactQty(ra, "press-1", 15)
	p.waitExactQty(ra, "press-2", 7)

	// Odoo goes away for the restore; once back, the agent finds that it
	// lacks what it confirmed, and says since when to rebook.
	p.odoo.SetDown(true)
	p.produce(m2, 1, 0)
	waitFor(t, 15*time.Second, "odoo seen away", func() (bool, string) {
		st := ra.a.Status().Odoo.State
		return st == "offline", st
	})
	p.odoo.RestoreBackup(backup)
	if n, s := len(p.odoo.Productivity()), p.scrapped("press-2"); n != 2 || s != 0 || p.qty("press-1") != 10 || p.closedLines("press-2") != 0 {
		t.Fatalf("restored: %d lines, %g scrapped, %g made; want 2 (press-2's open), 0, 10", n, s, p.qty("press-1"))
	}
	p.odoo.SetDown(false)
	ra.a.Flush()
	waitFor(t, 15*time.Second, "the log saying odoo lacks them", func() (bool, string) {
		return strings.Contains(p.logs.String(), "odoo lacks downtime lines or scrap bookings it confirmed"), ""
	})
	// It looks up the last 2 (SetBookedCheck), all lacking, then further
	// back for where the backup falls: after press-2's line opened.
	logs := p.logs.String()
	if !strings.Contains(logs, "lacking=2 of_last=2 ") {
		t.Errorf("the log does not say 2 of the last 2 lacking:\n%s", logs)
	}
	_, after, _ := strings.Cut(logs, "rebook_since=")
	since, err := time.Parse(time.RFC3339, strings.Fields(after + " ")[0])
	if err != nil || since.Before(start.Truncate(time.Second)) || since.After(backupAt) {
		t.Errorf("rebook_since %v (%v): want between the start %v and the backup %v", since, err, start, backupAt)
	}

	api := agent.NewAPIClient(p.listen)
	res, err := api.Rebook(ctx, start, true)
	if err != nil || res.Lines != 4 || res.Scraps != 1 || res.LinesMissing != 3 || res.LinesOpen != 1 || res.ScrapsMissing != 1 || res.LinesRebooked != 0 || !res.DryRun {
		t.Fatalf("dry run: %+v %v; want 4 lines and 1 scrap confirmed, 3 lines (1 of them open) and 1 scrap lacking, nothing booked", res, err)
	}
	if n := len(p.odoo.Productivity()); n != 2 {
		t.Fatalf("the dry run booked: %d lines", n)
	}
	res, err = api.Rebook(ctx, start, false)
	if err != nil || res.LinesRebooked != 3 || res.ScrapsRebooked != 1 || len(res.NotRebooked) != 0 || res.LinesWithoutWorkorder != 0 {
		t.Fatalf("rebook: %+v %v; want 3 lines and 1 scrap rebooked", res, err)
	}
	if n := p.closedLines("press-2"); n != 1 {
		t.Errorf("press-2's line, closed after the backup: %d closed, want 1", n)
	}
	// The count is written again where Odoo shows the backup's (press-1
	// made nothing since: without it, 10 until its next piece).
	p.waitExactQty(ra, "press-1", 15)
	lines := p.odoo.Productivity()
	open, xmlids := 0, map[string]bool{}
	for _, l := range lines {
		xmlids[l.XMLID] = true
		if l.End.IsZero() {
			open++
		}
	}
	if len(lines) != 4 || len(xmlids) != 4 || open != 1 {
		t.Errorf("after the rebook: %d lines (%d external ids), %d open; want 4, 4, 1: %+v", len(lines), len(xmlids), open, lines)
	}
	for _, s := range p.odoo.Scraps() {
		if s.Qty != 3 || s.State != "done" || s.Moves != 1 || s.WorkorderID != p.woIDs["press-2"] {
			t.Errorf("scrap after the rebook: %+v; want 3 done on press-2's work order, one stock move", s)
		}
	}
	// The stop going on ends: its line, booked again, is closed.
	p.run(m1)
	closed(3)
	p.waitLines(4)
	// The next write puts each work order's whole count back.
	p.produce(m1, 1, 0)
	p.produce(m2, 1, 0)
	p.waitExactQty(ra, "press-1", 16)
	p.waitExactQty(ra, "press-2", 9)
	// Again: Odoo lacks nothing, and nothing is booked twice.
	res, err = api.Rebook(ctx, start, false)
	if err != nil || res.LinesMissing != 0 || res.ScrapsMissing != 0 || res.Lines != 4 || res.Scraps != 1 {
		t.Errorf("second rebook: %+v %v; want nothing missing", res, err)
	}
	p.waitRoundsPass(ra, 2, "after the second rebook") // what it booked twice would be there
	if n, s := len(p.odoo.Productivity()), p.scrapped("press-2"); n != 4 || s != 3 {
		t.Errorf("at the end: %d lines, %g scrapped; want 4 and 3", n, s)
	}
}

// A work order made after the backup is gone from the restored database,
// and its id is given again to the next one made there (the id sequences
// are restored too): a line rebooked goes without it, and a scrap booking
// on it is left to a person, said with why — not booked on another order.
func TestRebookWithoutTheWorkOrderMadeAfterTheBackup(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	p.produce(m, 4, 0)
	p.waitExactQty(ra, "press-1", 4)
	backup := p.odoo.Backup()

	gone := p.nextWorkorder("press-1", 100)
	p.woIDs["press-1"] = gone
	p.produce(m, 6, 2)
	p.waitExactQty(ra, "press-1", 6)
	waitFor(t, 15*time.Second, "scrap", func() (bool, string) { return p.scrapped("press-1") == 2, fmt.Sprint(p.scrapped("press-1")) })
	p.stop(m, "JAM")
	p.run(m)
	waitFor(t, 15*time.Second, "the line", func() (bool, string) {
		n := p.closedLines("press-1")
		return n == 1, fmt.Sprint(n)
	})
	if l := p.odoo.Productivity(); len(l) != 1 || l[0].WorkorderID != gone {
		t.Fatalf("line %+v, want it on the work order %d", l, gone)
	}

	p.odoo.RestoreBackup(backup)
	// Made in the restored database: the id of the one that is gone, on
	// another work center, for another product.
	other := p.odoo.AddProduct("Other")
	wc := p.odoo.AddWorkcenter("OTHER", "other")
	if id := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/other", other, 10), wc, "WO other", "progress"); id != gone {
		t.Fatalf("the restored database gave id %d, not %d again", id, gone)
	}
	res, err := agent.NewAPIClient(p.listen).Rebook(ctx, start, false)
	if err != nil || res.LinesRebooked != 1 || res.LinesWithoutWorkorder != 1 || res.ScrapsMissing != 1 || res.ScrapsRebooked != 0 ||
		len(res.NotRebooked) != 1 || !strings.Contains(res.NotRebooked[0], "lacks its work order") {
		t.Fatalf("rebook: %+v %v; want the line without its work order, the scrap not rebooked", res, err)
	}
	if l := p.odoo.Productivity(); len(l) != 1 || l[0].WorkorderID != 0 || l[0].End.IsZero() {
		t.Errorf("line after the rebook: %+v, want it closed, without a work order", l)
	}
	if s := p.odoo.Scraps(); len(s) != 0 {
		t.Errorf("scrap booked: %+v", s)
	}
}

// A restore while the plant is quiet shows the agent no outage (Odoo down
// and back with nothing sent meanwhile): it looks anyway, every
// bookedCheckEvery (the self-probe: never reported).
func TestRestoreWhileQuietIsReported(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	t.Cleanup(agent.SetBookedCheck(200, 300*time.Millisecond)) // put back after the agent stopped
	ra := p.startAgent()
	m := p.machines[0]
	backup := p.odoo.Backup()
	p.stop(m, "JAM")
	p.run(m)
	waitFor(t, 15*time.Second, "the line", func() (bool, string) {
		n := p.closedLines("press-1")
		return n == 1, fmt.Sprint(n)
	})
	p.odoo.RestoreBackup(backup)
	waitFor(t, 15*time.Second, "the log saying odoo lacks it", func() (bool, string) {
		return strings.Contains(p.logs.String(), "lacking=1 of_last=1 "), ""
	})
	if st := ra.a.Status().Odoo; st.Failures != 0 || st.State != "online" {
		t.Errorf("odoo %+v: the agent saw an outage", st)
	}
	time.Sleep(time.Second) // said once, not at every look
	if n := strings.Count(p.logs.String(), "odoo lacks downtime lines"); n != 1 {
		t.Errorf("said %d times", n)
	}
}

// A rebook cut short after its first load (Odoo failing the second): the
// line still open that the first load booked again keeps the id Odoo gave
// it now. The ids were kept only at the rebook's end: the stop's end then
// found another id and warned that the line "was deleted in Odoo while it
// was open …: delete it again if the machine did not stop" — of a stop
// that happened, its line only rebooked. Loads shrunk to one line (after
// loads Odoo took too long for) make a rebook of two lines two loads.
func TestRebookCutShortKeepsTheOpenLinesID(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}, block: true})
	t.Cleanup(agent.SetBookedCheck(2, 0))
	ra := p.startAgent()
	m1, m2, m3 := p.machines[0], p.machines[1], p.machines[2]
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	backup := p.odoo.Backup()
	p.stop(m1, "JAM") // its line open
	p.waitLines(1)
	p.stop(m2, "JAM")
	p.waitLines(2)
	p.run(m2)
	waitFor(t, 15*time.Second, "press-2's line closed", func() (bool, string) {
		n := p.closedLines("press-2")
		return n == 1, fmt.Sprint(n)
	})
	p.odoo.SetDown(true)
	p.produce(m3, 1, 0)
	waitFor(t, 15*time.Second, "odoo seen away", func() (bool, string) {
		st := ra.a.Status().Odoo.State
		return st == "offline", st
	})
	p.odoo.RestoreBackup(backup)
	p.odoo.SetDown(false)
	ra.a.Flush()
	// A line Odoo makes before the rebook takes the id press-1's had.
	p.stop(m3, "JAM")
	p.waitLines(1)
	// The round that booked it ends first: a quick load grows the load
	// size as its round goes on, which undid a size set while it did (the
	// rebook then went in one load: seen in CI under load).
	after := ra.a.Flush()
	waitFor(t, 15*time.Second, "a round begun after press-3's line, ended with nothing to send", func() (bool, string) {
		st := ra.a.Status()
		return st.Odoo.RoundsDone > after && st.Buffer.Lanes["events"].Pending == 0, fmt.Sprintf("rounds done %d, lanes %+v", st.Odoo.RoundsDone, st.Buffer.Lanes)
	})
	agent.SetLinesPerLoad(ra.a, 1)
	var loads atomic.Int32
	var armed atomic.Bool
	armed.Store(true)
	p.odoo.BeforeCall(func(model, method string) {
		if armed.Load() && model == "mrp.workcenter.productivity" && method == "load" && loads.Add(1) == 2 {
			p.odoo.FailNextCall(model, method, 1, odootest.FaultHTTP503)
		}
	})
	api := agent.NewAPIClient(p.listen)
	res, err := api.Rebook(ctx, start, false)
	armed.Store(false)
	t.Logf("first rebook: %+v %v (%d loads)", res, err, loads.Load())
	if err == nil {
		t.Fatalf("the rebook went through its second load: %+v", res)
	}
	res, err = api.Rebook(ctx, start, false)
	if err != nil || res.LinesMissing != 1 || res.LinesRebooked != 1 {
		t.Fatalf("the rebook again: %+v %v; want press-2's line rebooked", res, err)
	}
	p.run(m1)
	waitFor(t, 15*time.Second, "press-1's line closed", func() (bool, string) {
		n := p.closedLines("press-1")
		return n == 1, fmt.Sprint(n)
	})
	if logs := p.logs.String(); strings.Contains(logs, "was deleted in Odoo while it was open") {
		t.Errorf("the rebooked line of press-1's stop said deleted in Odoo:\n%s", logs)
	}
	if n := len(p.odoo.Productivity()); n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
}

// A rebook whose load Odoo does not answer in time has failed (the round
// that did it failed; the load is in doubt, and a rebook again finds what
// landed): the API says so, with the error. It said the rebook was
// pending — taking longer than the API waits, going on, its result to
// be logged — because the load's timeout wraps context.DeadlineExceeded,
// as the API's own wait does (load45: the rebook of 100 rows timed out).
func TestRebookWhoseLoadTimesOutIsReportedFailed(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
	var armed atomic.Bool
	var held atomic.Int32
	p.odoo.BeforeCall(func(model, method string) {
		if armed.Load() && model == "mrp.workcenter.productivity" && method == "load" && held.Add(1) == 1 {
			time.Sleep(2500 * time.Millisecond) // past the 2 s timeout
		}
	})
	ra := p.startAgent()
	start := time.Now().Add(-time.Second)
	backup := p.odoo.Backup()
	m := p.machines[0]
	p.stop(m, "JAM")
	p.waitLines(1)
	p.run(m)
	waitFor(t, 15*time.Second, "the line closed", func() (bool, string) {
		return p.closedLines("press-1") == 1 && ra.a.Status().Buffer.Pending == 0, ""
	})
	p.odoo.SetDown(true)
	p.odoo.RestoreBackup(backup)
	p.odoo.SetDown(false)
	armed.Store(true)
	res, err := agent.NewAPIClient(p.listen).Rebook(context.Background(), start, false)
	if err == nil || res.Pending || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("rebook whose load timed out: %+v, %v; want its error, not pending", res, err)
	}
}
