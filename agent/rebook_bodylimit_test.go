package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// bookedLines are Odoo's downtime lines by external id.
func (p *plant) bookedLines() map[string]odootest.ProductivityLine {
	p.t.Helper()
	out := map[string]odootest.ProductivityLine{}
	for _, l := range p.odoo.Productivity() {
		if _, twice := out[l.XMLID]; twice {
			p.t.Errorf("line %s twice in Odoo", l.XMLID)
		}
		out[l.XMLID] = l
	}
	return out
}

// wantLinesAsBooked checks that Odoo has, each once, the lines of want but
// those of missing, as they were booked (their ids aside: a restored
// database gives new ones), and no other.
func (p *plant) wantLinesAsBooked(want map[string]odootest.ProductivityLine, missing ...string) {
	p.t.Helper()
	got := p.bookedLines()
	gone := map[string]bool{}
	for _, x := range missing {
		gone[x] = true
	}
	for x, w := range want {
		g, ok := got[x]
		switch {
		case gone[x] && ok:
			p.t.Errorf("line %s in Odoo, want it not booked", x)
		case gone[x]:
		case !ok:
			p.t.Errorf("line %s (%s, from %v) not in Odoo", x, w.Description, w.Start)
		default:
			g.ID, w.ID = 0, 0
			if g != w {
				p.t.Errorf("line %s in Odoo\n  %+v\nwant as booked\n  %+v", x, g, w)
			}
		}
	}
	for x := range got {
		if _, ok := want[x]; !ok {
			p.t.Errorf("line %s in Odoo, never booked before", x)
		}
	}
	if n := len(want) - len(missing); len(got) != n {
		p.t.Errorf("%d lines in Odoo, want %d", len(got), n)
	}
}

// restoredBehindALimit books what the plant did since the backup (stops
// with the reasons given, on every machine: one line each, pieces too)
// through front, without a limit; then it restores Odoo's database from
// the backup and sets front's limit on a request's body. It returns the
// lines Odoo had before the restore and the time a rebook books since.
func (p *plant) restoredBehindALimit(ra *runningAgent, front *bodyFront, limit int, reasons []string) (map[string]odootest.ProductivityLine, time.Time) {
	p.t.Helper()
	since := time.Now().Add(-time.Second)
	for _, m := range p.machines {
		p.produce(m, 10, 0)
	}
	p.waitExact(ra, 30*time.Second)
	backup := p.odoo.Backup()
	for _, m := range p.machines {
		p.produce(m, 5, 0)
	}
	p.waitExact(ra, 30*time.Second)
	p.odoo.SetDown(true)
	from := time.Now().Add(100 * time.Millisecond)
	for _, m := range p.machines {
		for i, reason := range reasons {
			at := from.Add(time.Duration(i) * 4 * time.Millisecond)
			p.publishStamped("plant/"+m.id, map[string]any{"good": m.goodNow(), "running": false, "reason": reason}, at)
			p.publishStamped("plant/"+m.id, map[string]any{"good": m.goodNow(), "running": true}, at.Add(2*time.Millisecond))
		}
		from = from.Add(time.Duration(len(reasons)) * 4 * time.Millisecond)
		m.mu.Lock()
		m.stops += len(reasons)
		m.mu.Unlock()
	}
	p.waitEventRecords(ra, 2*len(reasons)*len(p.machines))
	p.odoo.SetDown(false)
	ra.a.Flush()
	p.waitDrained(ra, "the stops")
	p.waitExact(ra, 60*time.Second)
	booked := p.bookedLines()
	if n := len(reasons) * len(p.machines); len(booked) != n {
		p.t.Fatalf("%d lines booked before the restore, want %d", len(booked), n)
	}
	p.odoo.RestoreBackup(backup)
	if n := len(p.odoo.Productivity()); n != 0 {
		p.t.Fatalf("%d lines in the restored database, want none", n)
	}
	front.setLimit(limit)
	return booked, since
}

// wantRebookLogged checks the log line of the rebook's result (the last
// one logged) says what the result says.
func (p *plant) wantRebookLogged(res agent.RebookResult) {
	p.t.Helper()
	logs := p.logs.String()
	i := strings.LastIndex(logs, "rebooked what Odoo had confirmed and lacks now")
	if i < 0 {
		p.t.Fatalf("the rebook's result is not logged")
	}
	line, _, _ := strings.Cut(logs[i:], "\n")
	for _, want := range []string{
		fmt.Sprintf("lines_rebooked=%d ", res.LinesRebooked), fmt.Sprintf("lines_missing=%d ", res.LinesMissing),
		fmt.Sprintf("not_rebooked=%d", len(res.NotRebooked)),
	} {
		if !strings.Contains(line, want) {
			p.t.Errorf("the rebook logged %q, want %s in it", line, want)
		}
	}
}

// Odoo restored from a backup, behind a proxy that refuses a request's
// body above 20 KiB (nginx's client_max_body_size; a web firewall's
// limit): a rebook of the 300 lines booked since loads 200 at a time, a
// load of about 28 KiB the proxy refuses (413), where one of 100 passes.
// The refused load is split (the size in force halved) and the same lines
// go again in smaller loads: every line is in Odoo once, as it was booked,
// none goes to the dead letters, and the rebook says (and logs) 300
// rebooked. The split had no test (taken as any other transient error,
// the rebook failed at its refused load, nothing rebooked; without the
// split, the 200 lines of the refused load were listed as not rebooked
// under the first one's name).
func TestRebookThroughAProxyRefusingTheWholeLoadSplitsIt(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}, block: true})
	front := newBodyFront(t, p.odoo.URL(), 0)
	p.editConfig(p.odoo.URL(), front.URL)
	ra := p.startAgent()
	reasons := make([]string, 100)
	for i := range reasons {
		reasons[i] = []string{"JAM", "SETUP"}[i%2]
	}
	booked, since := p.restoredBehindALimit(ra, front, 20<<10, reasons)
	loads, refused := front.count(loadCall), front.refusals()

	api := agent.NewAPIClient(p.listen)
	res, err := api.Rebook(context.Background(), since, false)
	front.report(t)
	loads, refused = front.count(loadCall)-loads, front.refusals()-refused
	t.Logf("rebook: %+v %v; %d loads, %d refused as too large; lines per load %d", res, err, loads, refused, ra.a.Status().Odoo.LinesPerLoad)
	if err != nil || res.Lines != 300 || res.LinesMissing != 300 || res.LinesRebooked != 300 || len(res.NotRebooked) != 0 {
		t.Fatalf("rebook: %+v %v; want the 300 lines rebooked", res, err)
	}
	if refused < 1 || loads > 8 {
		t.Errorf("the rebook sent %d loads, %d refused as too large; want the whole load refused, then about 3 of 100 lines", loads, refused)
	}
	p.wantLinesAsBooked(booked)
	p.wantRebookLogged(res)
	if !strings.Contains(p.logs.String(), "refused a load of downtime lines as too large") {
		t.Error("the shrink is not logged")
	}
	if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
		t.Errorf("%d dead letters (latest %q), want none", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}
	p.waitExact(ra, 30*time.Second) // the quantities written again, the lines closed
	// Again: Odoo lacks nothing, and nothing is booked twice.
	res, err = api.Rebook(context.Background(), since, false)
	if err != nil || res.LinesMissing != 0 || res.LinesRebooked != 0 || len(res.NotRebooked) != 0 {
		t.Errorf("second rebook: %+v %v; want nothing missing", res, err)
	}
	p.wantLinesAsBooked(booked)
}

// A line whose load alone is more than the proxy takes (a limit of 1,200
// bytes, the stop's reason 256 characters that JSON writes as 6 bytes
// each: about 2 KB) is not rebooked: the rebook lists it with why, naming
// the proxy's limit, and books the 40 others, each once — loads of a few
// lines pass. A rebook again lists it again and books nothing twice; with
// the proxy's limit raised, a rebook books it.
func TestRebookOfALineAloneTooLargeForTheProxyListsIt(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
	front := newBodyFront(t, p.odoo.URL(), 0)
	p.editConfig(p.odoo.URL(), front.URL)
	ra := p.startAgent()
	reasons := make([]string, 21)
	for i := range reasons {
		reasons[i] = "JAM"
	}
	reasons[10] = strings.Repeat("<", 256)
	booked, since := p.restoredBehindALimit(ra, front, 1600, reasons)
	var large string
	for x, l := range booked {
		if strings.Contains(l.Description, reasons[10]) {
			large = x
		}
	}
	if large == "" {
		t.Fatalf("no line of the long reason among %d booked", len(booked))
	}

	api := agent.NewAPIClient(p.listen)
	res, err := api.Rebook(context.Background(), since, false)
	front.report(t)
	t.Logf("rebook: %+v %v; lines per load %d", res, err, ra.a.Status().Odoo.LinesPerLoad)
	if err != nil || res.LinesMissing != 21 || res.LinesRebooked != 20 || len(res.NotRebooked) != 1 {
		t.Fatalf("rebook: %+v %v; want 20 of the 21 lines rebooked, one not", res, err)
	}
	for _, want := range []string{"downtime line " + large + " of press-1", "more than the proxy in front of Odoo takes", "client_max_body_size", "then run plantedge rebook again"} {
		if !strings.Contains(res.NotRebooked[0], want) {
			t.Errorf("not rebooked: %q; want %q in it", res.NotRebooked[0], want)
		}
	}
	p.wantLinesAsBooked(booked, large)
	p.wantRebookLogged(res)
	if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
		t.Errorf("%d dead letters (latest %q), want none: a rebook lists what it cannot book", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}

	// Again: it is listed again, and nothing is booked twice.
	res, err = api.Rebook(context.Background(), since, false)
	t.Logf("rebook again: %+v %v", res, err)
	if err != nil || res.LinesMissing != 1 || res.LinesRebooked != 0 || len(res.NotRebooked) != 1 || !strings.Contains(res.NotRebooked[0], large) {
		t.Errorf("rebook again: %+v %v; want the long line lacking and listed again, nothing booked", res, err)
	}
	p.wantLinesAsBooked(booked, large)

	// The proxy's limit raised: it is booked.
	front.setLimit(0)
	res, err = api.Rebook(context.Background(), since, false)
	if err != nil || res.LinesMissing != 1 || res.LinesRebooked != 1 || len(res.NotRebooked) != 0 {
		t.Errorf("rebook with the limit raised: %+v %v; want the long line rebooked", res, err)
	}
	p.wantLinesAsBooked(booked)
	p.waitExact(ra, 30*time.Second)
}

// Behind a proxy that takes 16 KiB at most (the limit the runbook measured
// the drain at), a rebook of 600 lines looked their external ids up 500 a
// page, a request of about 22 KB the proxy refused: the rebook failed
// before it booked anything, and again at every try, while the drain went
// through. A page refused as too large is looked up in halves.
func TestRebookBehindASmallProxyLimitLooksUpInSmallerPages(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}, block: true})
	front := newBodyFront(t, p.odoo.URL(), 0)
	p.editConfig(p.odoo.URL(), front.URL)
	ra := p.startAgent()
	reasons := make([]string, 200)
	for i := range reasons {
		reasons[i] = "JAM"
	}
	booked, since := p.restoredBehindALimit(ra, front, 16<<10, reasons)
	api := agent.NewAPIClient(p.listen)
	res, err := api.Rebook(context.Background(), since, true)
	if err != nil || res.Lines != 600 || res.LinesMissing != 600 {
		t.Fatalf("dry run: %+v %v; want 600 lines lacking", res, err)
	}
	res, err = api.Rebook(context.Background(), since, false)
	front.report(t)
	if err != nil || res.LinesMissing != 600 || res.LinesRebooked != 600 || len(res.NotRebooked) != 0 {
		t.Fatalf("rebook: %+v %v; want the 600 lines rebooked", res, err)
	}
	p.wantLinesAsBooked(booked)
	p.wantRebookLogged(res)
	p.waitExact(ra, 30*time.Second)
}
