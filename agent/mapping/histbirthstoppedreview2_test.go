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

// The press stops live at 1 and the edge node loses the broker; stored:
// run 4, stop 6, run 7, stop 8. The BIRTH at 10 finds it stopped; the
// flush stops after 4 and 6 (the stop is split at 4: 1..4, and the stop
// begun at the BIRTH goes on from 6). Away again, the press runs at 15
// (stored); the BIRTH at 20 says running (line 6..20). The flush sends the
// run at 7 only (6..20 ends at 7: Ran) and the link drops again. The BIRTH
// at 30 says stopped, the one at 40 running (line 30..40, the new
// EndAtBirth). Only then come the stop at 8 and the run at 15: the press
// was stopped 8..15. Before this session (7fab18d) one line 1..20 covered
// it; on main the stored stop left after the run at 7 was lost (ranLeft
// looks at EndAtBirth only, and the BIRTH at 40 had replaced it).
func TestSparkplugHistoricalStoredStopLeftAfterARanLineThroughALaterBirthEndedStop(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			h := newSPHist(t)
			run, stored := spRun, spStored
			var all []Event
			step := func(f func()) {
				f()
				all = append(all, h.got()...)
				if restart {
					h.restart()
				}
			}
			step(func() { h.send(0, run(true, 0)) })
			step(func() { h.send(1, run(false, 1)) })
			step(func() { h.birth(10, run(false, 10)) })
			step(func() { h.send(10, stored(run(true, 4))) })
			step(func() { h.send(10, stored(run(false, 6))) })
			step(func() { h.birth(20, run(true, 20)) })
			step(func() { h.send(20, stored(run(true, 7))) })
			step(func() { h.birth(30, run(false, 30)) })
			step(func() { h.birth(40, run(true, 40)) })
			step(func() { h.send(40, stored(run(false, 8))) })
			step(func() { h.send(40, stored(run(true, 15))) })
			got := odooLines(t, all)
			want := []string{"1..4", "30..40", "6..7", "8..15"}
			if !slices.Equal(got, want) {
				t.Errorf("lines %v, want %v (events %+v)", got, want, all)
			}
		})
	}
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
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			h := newSPHist(t)
			run, stored := spRun, spStored
			var all []Event
			step := func(f func()) {
				f()
				all = append(all, h.got()...)
				if restart {
					h.restart()
				}
			}
			step(func() { h.send(0, run(true, 0)) })
			step(func() { h.birth(48.5, run(false, 48.5)) })
			step(func() { h.birth(56.5, run(true, 56.5)) })
			step(func() { h.birth(69.5, run(false, 69.5)) })
			step(func() { h.send(69.5, stored(run(false, 40)), stored(run(true, 40.5))) })
			step(func() { h.send(71, run(true, 71)) })
			step(func() { h.send(71, stored(run(false, 47))) })
			step(func() { h.send(71, stored(run(true, 54.5))) })
			step(func() { h.send(71, stored(run(false, 66.5))) })
			got := odooLines(t, all)
			want := []string{"40..40.5", "47..48.5", "48.5..54.5", "66.5..69.5", "69.5..71"}
			if !slices.Equal(got, want) {
				t.Errorf("lines %v, want %v (events %+v)", got, want, all)
			}
		})
	}
}
