package agent_test

import (
	"testing"
	"time"
)

// A stop's open record and its close fall in different loads of one round
// when the machines' turns do not divide a load (three presses): the open
// one is acknowledged without a call and the close books the line, each
// line closed once, none left open (the review of the loads a round).
func TestEndToEndStopsBacklogOpenAndCloseInTwoLoads(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}, block: true})
	p.editConfig("forward:\n  interval: 100ms\n", "forward:\n  interval: 1h\n")
	ra := p.startAgent()
	const stops = 167
	from := p.stopsWhileOdooDown(ra, stops)
	p.odoo.SetDown(false)
	ra.a.Flush()
	waitFor(t, 60*time.Second, "the backlog's lines", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Lanes["events"].Pending == 0, ""
	})
	lines := p.odoo.Productivity()
	if len(lines) != stops*len(p.machines) {
		t.Fatalf("%d lines, want %d", len(lines), stops*len(p.machines))
	}
	for _, l := range lines {
		if l.End.IsZero() {
			t.Errorf("line %d (work center %d, from %v) left open", l.ID, l.WorkcenterID, l.Start)
		}
	}
	p.produceAfterBacklog(ra, from)
}
