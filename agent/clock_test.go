package agent_test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/odoo/odootest"
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
//
// What the agent took is waited for by what it shows, and the test notes
// the wall time around each value: the stop the agent saw lasts between
// the end's setting less the start's being shown and the end's being read
// less the start's setting — 1.5 s and more on a loaded machine, which
// fixed bounds of 1–3 s did not allow for.
func TestStopsAfterThePLCClockWentBack(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	p.editConfig(fmt.Sprintf("    good_count: { opcua: { server: line1, node: %q } }\n", p.ua.NodeID("ua-press-1.Good")), "")
	ra := p.startAgent()
	state := func() string { return ra.a.Status().Machines[0].State }
	now := time.Now()
	setA := time.Now()
	p.ua.SetAt("ua-press-1.Running", false, now) // stop A, its clock right
	waitFor(t, 30*time.Second, "stop A shown", func() (bool, string) { return state() == "stopped", state() })
	shownA := time.Now()
	time.Sleep(1500 * time.Millisecond)
	back := now.Add(-time.Hour)
	// Its end, the clock an hour back: stamped before the stop, held until
	// the watch's next value tells a clock gone back from a stale answer.
	// (Everything before it was read once stop A showed: the samples the
	// agent counts since are this one's.)
	setEnd := time.Now()
	p.setAt("ua-press-1.Running", true, back.Add(1500*time.Millisecond))
	readEnd := time.Now()
	// Stop B: it releases the end, and stop A's line is booked; status
	// then shows the machine stopped (stop B ignored as stale, it showed
	// the machine running through it).
	p.ua.SetAt("ua-press-1.Running", false, back.Add(3*time.Second))
	waitFor(t, 30*time.Second, "stop A's line", func() (bool, string) {
		l := p.odoo.Productivity()
		return len(l) == 1 && !l[0].End.IsZero(), fmt.Sprintf("%+v", l)
	})
	if st := state(); st != "stopped" {
		t.Fatalf("during the stop after the clock went back the machine shows %q", st)
	}
	time.Sleep(1500 * time.Millisecond)
	p.setAt("ua-press-1.Running", true, back.Add(5*time.Second))
	waitFor(t, 30*time.Second, "two lines", func() (bool, string) {
		return len(p.odoo.Productivity()) == 2 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", p.odoo.Productivity())
	})
	lines := p.odoo.Productivity()
	slices.SortFunc(lines, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
	// Odoo keeps whole seconds: a length is off by less than one.
	a, b := lines[0], lines[1]
	if d, lo, hi := a.End.Sub(a.Start), setEnd.Sub(shownA), readEnd.Sub(setA); d <= lo-time.Second || d >= hi+time.Second {
		t.Errorf("stop A's line lasts %v, want the %v–%v the agent saw: %+v", d, lo.Round(time.Millisecond), hi.Round(time.Millisecond), a)
	}
	// Stop B is dated by its source times, both after the step: 2 s.
	if d := b.End.Sub(b.Start); d < time.Second || d > 3*time.Second {
		t.Errorf("stop B's line lasts %v, want the 2 s between its source times: %+v", d, b)
	}
}

// A PLC whose battery-backed clock fell back to 2000 stamps its values
// there: its stops are dated when the agent received them, and the age of
// the oldest buffered record is how long it waited (it was 27 years).
func TestPLCClockNeverSet(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	ra := p.startAgent()
	p.odoo.SetDown(true)
	y2k := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	p.setAt("ua-press-1.Good", int64(1010), y2k)
	p.setAt("ua-press-1.Running", false, y2k.Add(10*time.Minute))
	time.Sleep(time.Second) // the stop lasts about a second
	p.setAt("ua-press-1.Running", true, y2k.Add(20*time.Minute))
	// The values come through the OPC UA subscription: waited for, not
	// taken as there (a loaded machine may take longer than the second).
	var st agent.Status
	waitFor(t, 15*time.Second, "the values buffered and their source times named", func() (bool, string) {
		st = ra.a.Status()
		e := st.Machines[0].Error
		return st.Buffer.Pending > 0 && strings.Contains(e, "source time that cannot be used") && strings.Contains(e, "2000-01-01"),
			fmt.Sprintf("%d pending, machine error %q", st.Buffer.Pending, e)
	})
	if st.Buffer.OldestAgeSeconds > 60 {
		t.Fatalf("buffer: %d pending, oldest %v s old", st.Buffer.Pending, st.Buffer.OldestAgeSeconds)
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

// This box's clock is stepped during the stops of a machine whose values
// carry no source time, so they are dated by it at their receipt: three
// days forward (NTP setting a box that booted with its clock behind, the
// WAN down at first), then four hours back. Each line lasts the 2 s the
// agent saw, by the box's boot clock, dated by the clock as it is now —
// not three days of downtime that never was, nor a line that ends four
// hours before it starts. Then a stop received while Odoo is down, with the
// clock five hours behind, is booked after the clock was set — also across
// a restart of the agent: dated in the new clock. (The test steps the wall
// clock as the agent sees it; the boot clock is the box's own.) The agent
// logs and counts each step of its clock.
func TestStopAcrossAStepOfThisBoxsClock(t *testing.T) {
	t.Parallel()
	p := plantWithoutSourceTimes(t)
	m := p.machines[0]
	var shift atomic.Int64
	p.beforeRun = func(a *agent.Agent) {
		a.SetClock(func() time.Duration { return time.Duration(shift.Load()) }, 20*time.Millisecond)
	}
	ra := p.startAgentWith(false)
	p.publishState(m, 1000, true, false, 1)
	p.waitState(ra, "running")
	checkLine := func(i int, what string) {
		t.Helper()
		waitFor(t, 15*time.Second, "the line", func() (bool, string) {
			return len(p.odoo.Productivity()) == i+1 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", p.odoo.Productivity())
		})
		l := p.odoo.Productivity()[i]
		if d := l.End.Sub(l.Start); d < time.Second || d > 5*time.Second {
			t.Errorf("%s: the line lasts %v (%v – %v), want the 2 s the agent saw", what, d, l.Start, l.End)
		}
		if now := time.Now().Add(time.Duration(shift.Load())); l.End.Before(now.Add(-time.Minute)) || l.End.After(now.Add(time.Minute)) {
			t.Errorf("%s: the line ends at %v, want it dated by the clock as it is now, %v", what, l.End, now)
		}
	}
	for i, step := range []time.Duration{72 * time.Hour, -4 * time.Hour} {
		p.publishState(m, 1000, false, false, 1)
		p.waitState(ra, "stopped")
		time.Sleep(2 * time.Second)
		shift.Add(int64(step))
		p.publishState(m, 1000, true, false, 1)
		checkLine(i, fmt.Sprint("a step of ", step, " during the stop"))
	}
	if !strings.Contains(p.logs.String(), "this box's clock was stepped during a stop") {
		t.Error("the stop's correction was not logged")
	}
	waitFor(t, 10*time.Second, "the steps reported", func() (bool, string) {
		n, _ := metric(p.metrics(), "plantedge_clock_steps_total")
		return n == 2, fmt.Sprint(n)
	})
	// A step is counted, then logged: its line may come a moment after.
	waitFor(t, 10*time.Second, "the second step logged", func() (bool, string) {
		return strings.Contains(p.logs.String(), "by=-4h0m0s"), ""
	})
	if logs := p.logs.String(); !strings.Contains(logs, "by=72h0m0s") || !strings.Contains(logs, "by=-4h0m0s") {
		t.Error("the steps' log lines do not say by how much")
	}

	// Received with the clock behind, booked after it was set.
	for i, restart := range []bool{false, true} {
		shift.Add(int64(-5 * time.Hour))
		p.odoo.SetDown(true)
		p.publishState(m, 1000, false, false, 1)
		p.waitState(ra, "stopped")
		time.Sleep(2 * time.Second)
		p.publishState(m, 1000, true, false, 1)
		p.waitState(ra, "running")
		waitFor(t, 10*time.Second, "the line buffered", func() (bool, string) {
			st := ra.a.Status()
			return st.Buffer.Pending > 0, fmt.Sprint(st.Buffer)
		})
		if restart {
			ra.stop()
		}
		shift.Add(int64(5 * time.Hour))
		if restart {
			ra = p.startAgentWith(false)
		}
		p.odoo.SetDown(false)
		checkLine(2+i, fmt.Sprint("booked after the clock was set (restart: ", restart, ")"))
	}
	if !strings.Contains(p.logs.String(), "a stop received before a step of this box's clock is booked in the new clock") {
		t.Error("the line's new dates were not logged")
	}
}
