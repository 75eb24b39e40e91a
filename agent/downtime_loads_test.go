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
	p.odoo.SetDown(true)
	const stops = 167
	from := time.Now().Add(100 * time.Millisecond)
	for _, m := range p.machines {
		from = p.stopsStamped(m, stops, from)
		m.mu.Lock()
		m.stops += stops
		m.mu.Unlock()
	}
	p.waitEventRecords(ra, 2*stops*len(p.machines))
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
	time.Sleep(time.Until(from))
	p.editConfig("forward:\n  interval: 1h\n", "forward:\n  interval: 100ms\n")
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	for _, m := range p.machines {
		p.produce(m, 2, 0)
	}
	p.waitExact(ra, 60*time.Second)
}
