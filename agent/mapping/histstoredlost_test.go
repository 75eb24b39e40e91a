package mapping

import (
	"fmt"
	"testing"
)

// The edge node stores a stop at 44 and reconnects: the BIRTH at 49 says
// stopped (a stop begun there), the press runs live at 52.5 and stops live
// at 60.5. Away again, it stores a run at 65 and a stop at 67.5; the BIRTH
// at 70 finds the stop from 60.5 on. Only then is the history flushed, both
// outages' values in it: the stop at 44, the run at 65 (which ends the stop
// found on: 60.5..65), the stop at 67.5. The stored stop at 44 ran at
// least to the BIRTH at 49 (no stored run before it): 7fab18d booked
// 44..49 (the run at 65 ended it, cut at the stop after); before this
// change the split at 65 dropped it, and 44..49 was lost.
func TestSparkplugHistoricalStoredStopBeforeAStopFoundOnIsBookedAtTheSplit(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.birth(49, run(false, 49)) })
		step(func() { h.send(52.5, run(true, 52.5)) })
		step(func() { h.send(60.5, run(false, 60.5)) })
		step(func() { h.birth(70, run(false, 70)) })
		step(func() { h.send(70, stored(run(false, 44))) })
		step(func() { h.send(70, stored(run(true, 65)), stored(run(false, 67.5))) })
		step(func() { h.send(73, run(true, 73)) })
	}, func(t *testing.T, got []string, _ []Event) {
		noOverlap(t, got)
		if want := "[44..49 49..52.5 60.5..65 67.5..73]"; fmt.Sprint(got) != want {
			t.Errorf("lines %v, want %v", got, want)
		}
	})
}
