package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// A stop whose ends carry no source time is dated by this box's clock at
// their receipt. When that clock is stepped during the stop — NTP setting a
// box that booted with its clock days behind (no real-time clock, the WAN
// down at first), someone setting it by hand — the line lasts as long as
// the agent saw the stop by the box's boot clock, which nothing steps:
// not days of downtime that never was, nor a line that ends before it
// starts. Dated in the clock as it is now; a line opened at the stop
// (block_workcenter) keeps its start, which names it.
func TestStopAcrossAStepOfThisBoxsClock(t *testing.T) {
	at := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	const stopped = 5 * time.Minute
	up := func(boot string, d time.Duration) connectors.Seen { return connectors.Seen{Boot: boot, Up: d} }
	for _, tc := range []struct {
		name              string
		src               bool          // the samples carry the source's time, which the step does not move
		step              time.Duration // of the box's clock during the stop
		runSeen           connectors.Seen
		roundTrip         bool // the state stored and read back between the two (a restart)
		lineOpened        bool
		wantStart         time.Time
		wantLen, wantStep time.Duration
	}{
		{name: "no step", runSeen: up("A", 400*time.Second), wantStart: at, wantLen: stopped},
		{name: "three days forward", step: 72 * time.Hour, runSeen: up("A", 400*time.Second),
			wantStart: at.Add(72 * time.Hour), wantLen: stopped, wantStep: 72 * time.Hour},
		{name: "three days forward, across a restart of the agent", step: 72 * time.Hour, runSeen: up("A", 400*time.Second), roundTrip: true,
			wantStart: at.Add(72 * time.Hour), wantLen: stopped, wantStep: 72 * time.Hour},
		{name: "an hour back", step: -time.Hour, runSeen: up("A", 400*time.Second),
			wantStart: at.Add(-time.Hour), wantLen: stopped, wantStep: -time.Hour},
		{name: "three days forward, a line opened at the stop", step: 72 * time.Hour, runSeen: up("A", 400*time.Second), lineOpened: true,
			wantStart: at, wantLen: stopped, wantStep: 72 * time.Hour},
		{name: "an hour back, a line opened at the stop", step: -time.Hour, runSeen: up("A", 400*time.Second), lineOpened: true,
			wantStart: at, wantLen: stopped, wantStep: -time.Hour},
		// NTP's small steps, and a burst's receive times moved apart, are
		// left as the clock says.
		{name: "a step below BoxStep", step: time.Second, runSeen: up("A", 400*time.Second), wantStart: at, wantLen: stopped + time.Second},
		// Another boot: the boot clock cannot tell; the wall clock stands.
		{name: "after a reboot", step: 72 * time.Hour, runSeen: up("B", 40*time.Second), wantStart: at, wantLen: stopped + 72*time.Hour},
		// ...and a run received with the clock behind the stop's start: an
		// empty line at the start, and no boot-clock reading — with the
		// run's, the agent would take the start for dated in a clock three
		// days ahead and move the line back by as much.
		{name: "after a reboot, the clock behind", step: -72 * time.Hour, runSeen: up("B", 40*time.Second), wantStart: at, wantLen: 0},
		{name: "boot clock not known", step: 72 * time.Hour, runSeen: connectors.Seen{}, wantStart: at, wantLen: stopped + 72*time.Hour},
		// The PLC's clock dates them: the box's is not asked.
		{name: "source times", src: true, step: 72 * time.Hour, runSeen: up("A", 400*time.Second), wantStart: at, wantLen: stopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMapper(t, testConfig)
			st := NewState()
			send := func(run bool, src, recv time.Time, seen connectors.Seen) []Event {
				t.Helper()
				p := `{"run": false}`
				if run {
					p = `{"run": true}`
				}
				s := connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: []byte(p), Good: true, ReceiveTime: recv, Seen: seen}
				if tc.src {
					s.SourceTime = src
				}
				return mustApply(t, m, st, s)
			}
			send(true, at.Add(-time.Minute), at.Add(-time.Minute), up("A", 40*time.Second))
			if evs := send(false, at, at, up("A", 100*time.Second)); len(evs) != 1 || evs[0].Kind != EventStopped {
				t.Fatalf("stop: %+v", evs)
			}
			if tc.lineOpened {
				st.Machines["m1"].LineOpened = true
			}
			if tc.roundTrip {
				b, err := st.Marshal("m1")
				if err != nil {
					t.Fatal(err)
				}
				st = NewState()
				if err := st.Unmarshal("m1", b); err != nil {
					t.Fatal(err)
				}
			}
			evs := send(true, at.Add(stopped), at.Add(stopped+tc.step), tc.runSeen)
			if len(evs) != 1 || evs[0].Kind != EventRunning {
				t.Fatalf("run: %+v", evs)
			}
			ev := evs[0]
			if !ev.Start.Equal(tc.wantStart) || ev.End.Sub(ev.Start) != tc.wantLen || ev.BoxStep != tc.wantStep {
				t.Errorf("line %v – %v (%v), box step %v; want from %v for %v, box step %v",
					ev.Start, ev.End, ev.End.Sub(ev.Start), ev.BoxStep, tc.wantStart, tc.wantLen, tc.wantStep)
			}
			// A line both of whose ends the box's clock dated carries the
			// end's boot-clock reading: the agent dates it in the clock as
			// it is when it books it.
			// Not for a stop begun in another boot, nor one whose end is not
			// the time its receipt was dated (a line opened at the stop).
			receipt := at.Add(stopped + tc.step)
			if want := map[bool]connectors.Seen{true: tc.runSeen}[!tc.src && tc.runSeen.Boot == "A" && ev.End.Equal(receipt)]; ev.Seen != want {
				t.Errorf("the line's Seen is %+v, want %+v", ev.Seen, want)
			}
		})
	}
}
