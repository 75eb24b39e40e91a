package mapping

import (
	"fmt"
	"slices"
	"sort"
	"testing"
)

// odooLines applies stop events as Odoo ends with them: a closed stop's
// line under its start, a stored end (EventEndStored) updating the line
// of that start. It returns the lines as "start..end" in minutes.
func odooLines(t *testing.T, evs []Event) []string {
	t.Helper()
	lines := map[float64]float64{}
	for _, e := range evs {
		s, en := e.Start.Sub(spT0).Minutes(), e.End.Sub(spT0).Minutes()
		switch e.Kind {
		case EventRunning:
			lines[s] = en
		case EventEndStored:
			if _, ok := lines[s]; !ok {
				t.Errorf("a stored end for no line: %v..%v", s, en)
			}
			lines[s] = en
		}
	}
	var out []string
	for s, e := range lines {
		if e > s {
			out = append(out, fmt.Sprintf("%v..%v", s, e))
		}
	}
	sort.Strings(out)
	return out
}

// Three BIRTHs come with no history between them: stopped at 48.5 (a stop
// begun there), running at 56.5 (its line 48.5..56.5, to be corrected by
// its stored run), stopped at 69.5 (a stop begun there). The history's
// first values (an earlier stop 40..40.5) come, the press runs live at 71,
// and only then the stored stop at 47, its run at 54.5, and the stop at
// 66.5. The stored stop at 47 is the one the stop begun at 48.5 went on
// from, not a stop left before the BIRTH at 69.5: before, histTail booked
// it to 69.5 over the line 48.5..56.5 (whose correction it took the place
// of), and 48.5..54.5 was booked twice.
func TestSparkplugHistoricalTailDoesNotBookOverALineABirthEndedStillToBeCorrected(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.birth(48.5, run(false, 48.5)) })
		step(func() { h.birth(56.5, run(true, 56.5)) })
		step(func() { h.birth(69.5, run(false, 69.5)) })
		step(func() { h.send(69.5, stored(run(false, 40)), stored(run(true, 40.5))) })
		step(func() { h.send(71, run(true, 71)) })
		step(func() { h.send(71, stored(run(false, 47))) })
		step(func() { h.send(71, stored(run(true, 54.5))) })
		step(func() { h.send(71, stored(run(false, 66.5))) })
	}, func(t *testing.T, got []string, all []Event) {
		want := []string{"40..40.5", "47..48.5", "48.5..54.5", "66.5..69.5", "69.5..71"}
		if !slices.Equal(got, want) {
			t.Errorf("lines %v, want %v (events %+v)", got, want, all)
		}
	})
}

// block_workcenter. The press stops live at 20; stored while away: run
// 25, stop 28, run 31.5, stop 33, run 37, stop 39, run 46. The BIRTH at
// 57.5 finds it stopped; the flush sends up to the stop at 33 (1..25 split
// off, the stop begun at 57.5 goes on from 33) and the link drops. The
// BIRTH at 61 finds that stop on too (OnAtBirth); the press runs live at
// 63: the stop's line (open, keyed by 57.5) ends there and the stored part
// 33..57.5 is a line of its own. The rest of the flush (37, 39, 46) must
// end that part at 37: before, nothing tracked it (the stop went on
// through the BIRTH at 61, so only OnAtBirth was kept), 33..57.5 stayed,
// and the stored stop 39..46 was booked inside it (7 minutes twice).
func TestSparkplugHistoricalStoredPartOfAStopFoundOnAgainEndsAtItsStoredRun(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, true, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.send(20, run(false, 20)) })
		step(func() { h.birth(57.5, run(false, 57.5)) })
		step(func() {
			h.send(57.5, stored(run(true, 25)), stored(run(false, 28)), stored(run(true, 31.5)), stored(run(false, 33)))
		})
		step(func() { h.birth(61, run(false, 61)) })
		step(func() { h.send(63, run(true, 63)) })
		step(func() { h.send(63, stored(run(true, 37)), stored(run(false, 39)), stored(run(true, 46))) })
	}, func(t *testing.T, got []string, all []Event) {
		want := []string{"20..25", "28..31.5", "33..37", "39..46", "57.5..63"}
		if !slices.Equal(got, want) {
			t.Errorf("lines %v, want %v (events %+v)", got, want, all)
		}
	})
}

// spSteps runs script twice, as it is and with a restart (the state
// marshalled and read back) after each step, and checks the events of each
// run and the lines Odoo ends with (odooLines). With block, the machine's
// open line is kept as the agent keeps it for block_workcenter (opened at a
// stop, closed at a live run).
func spSteps(t *testing.T, block bool, script func(h *spHist, step func(func())), check func(t *testing.T, lines []string, all []Event)) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			h := newSPHist(t)
			var all []Event
			script(h, func(f func()) {
				f()
				evs := h.got()
				for _, e := range evs {
					if !block {
						break
					}
					p1 := h.st.Machines["p1"]
					switch {
					case e.Kind == EventStopped:
						p1.LineOpened = true // block_workcenter: the agent opened its line
					case e.Kind == EventRunning && !e.Historical:
						p1.LineOpened = false
					}
				}
				all = append(all, evs...)
				if restart {
					h.restart()
				}
			})
			check(t, odooLines(t, all), all)
		})
	}
}
