package mapping

import "testing"

// The press stops live at 1 and the edge node loses the broker; stored:
// run 4, stop 6, run 7, stop 8. The BIRTH at 10 finds it stopped; the
// flush stops after 4 and 6 (the stop is split at 4: 1..4, and the stop
// begun at the BIRTH goes on from 6). Away again, the press runs at 15
// (stored); the BIRTH at 20 says running (line 6..20). The flush sends the
// run at 7 only (6..20 ends at 7: Ran) and the link drops again. The BIRTH
// at 30 says stopped, the one at 40 running (line 30..40, the new
// EndAtBirth). Only then come the stop at 8 and the run at 15: the press
// was stopped 8..15. 7fab18d covered it with one line 1..20; before this
// change the stored stop left after the run at 7 was lost (ranLeft looked
// at EndAtBirth only, and the BIRTH at 40 had replaced it).
func TestSparkplugHistoricalStoredStopLeftAfterARanLineThroughALaterBirthEndedStop(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
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
	}, wantLines("[1..4 30..40 6..7 8..15]"))
}

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
	}, wantLines("[44..49 49..52.5 60.5..65 67.5..73]"))
}

// As above, but the later outage's history tells the stop again (stopped
// at 12) before its run at 15: the press was stopped from 8 all along, and
// the stop stored again is no line of its own inside 8..15.
func TestSparkplugHistoricalStoredStopLeftAfterARanLineIsNotBookedAgainByAStopStoredAgain(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
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
		step(func() { h.send(45, stored(run(false, 12)), stored(run(true, 15))) })
	}, wantLines("[1..4 30..40 6..7 8..15]"))
}
