package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// setAt sets an OPC UA node with a source time and waits for the agent to
// have read it.
func (p *plant) setAt(name string, v any, at time.Time) {
	p.t.Helper()
	samples := func() float64 {
		v, _ := metric(p.metrics(), "plantedge_samples_total")
		return v
	}
	n := samples()
	p.ua.SetAt(name, v, at)
	waitFor(p.t, 15*time.Second, fmt.Sprint("the agent reading ", name, " ", v), func() (bool, string) {
		got := samples()
		return got > n, fmt.Sprint(got)
	})
}

// A PLC's clock goes back an hour (NTP stepping it, local time at the
// autumn change) with no counter on that PLC to show it. Its OPC UA session
// watches the run bit without a break, so a later notification is newer
// whatever its source time says: the stops after the step are booked (they
// were ignored as stale until the clock caught up, and status showed the
// machine running through them), and the stop the step cut through lasts
// as long as the agent saw it, not 0 s.
func TestStopsAfterThePLCClockWentBack(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	p.editConfig(fmt.Sprintf("    good_count: { opcua: { server: line1, node: %q } }\n", p.ua.NodeID("ua-press-1.Good")), "")
	ra := p.startAgent()
	now := time.Now()
	p.setAt("ua-press-1.Running", false, now) // stop A, its clock right
	time.Sleep(1500 * time.Millisecond)
	back := now.Add(-time.Hour)
	p.setAt("ua-press-1.Running", true, back.Add(1500*time.Millisecond)) // its end, the clock an hour back
	p.setAt("ua-press-1.Running", false, back.Add(3*time.Second))        // stop B
	if st := ra.a.Status().Machines[0].State; st != "stopped" {
		t.Fatalf("during the stop after the clock went back the machine shows %q", st)
	}
	time.Sleep(1500 * time.Millisecond)
	p.setAt("ua-press-1.Running", true, back.Add(5*time.Second))
	waitFor(t, 15*time.Second, "two lines", func() (bool, string) {
		return len(p.odoo.Productivity()) == 2 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", p.odoo.Productivity())
	})
	for i, l := range p.odoo.Productivity() {
		if d := l.End.Sub(l.Start); d < time.Second || d > 3*time.Second {
			t.Errorf("line %d lasts %v, want the 1.5–2 s the agent saw: %+v", i, d, l)
		}
	}
}

// A PLC whose battery-backed clock fell back to 2000 stamps its values
// there: its stops are dated when the agent received them, and the age of
// the oldest buffered record is how long it waited (it was 27 years).
func TestPLCClockNeverSet(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	ra := p.startAgent()
	p.odoo.SetDown(true)
	y2k := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	p.setAt("ua-press-1.Good", int64(1010), y2k)
	p.setAt("ua-press-1.Running", false, y2k.Add(10*time.Minute))
	time.Sleep(time.Second)
	p.setAt("ua-press-1.Running", true, y2k.Add(20*time.Minute))
	st := ra.a.Status()
	if st.Buffer.Pending == 0 || st.Buffer.OldestAgeSeconds > 60 {
		t.Fatalf("buffer: %d pending, oldest %v s old", st.Buffer.Pending, st.Buffer.OldestAgeSeconds)
	}
	if e := st.Machines[0].Error; !strings.Contains(e, "source time that cannot be used") || !strings.Contains(e, "2000-01-01") {
		t.Errorf("machine error %q does not name the source times", e)
	}
	p.odoo.SetDown(false)
	waitFor(t, 15*time.Second, "the line", func() (bool, string) {
		return len(p.odoo.Productivity()) == 1 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", p.odoo.Productivity())
	})
	l := p.odoo.Productivity()[0]
	if time.Since(l.Start) > time.Minute || l.End.Sub(l.Start) < 500*time.Millisecond {
		t.Fatalf("line %v – %v, want the last minute's stop of about a second", l.Start, l.End)
	}
}
