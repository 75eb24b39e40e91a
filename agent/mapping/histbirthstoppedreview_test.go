package mapping

import "testing"

// The press runs; the edge node loses the broker and the press stops at 2
// (stored). The BIRTH at 5 says stopped (a stop begun at the BIRTH); the
// node loses the broker again, the press runs at 7 and stops at 8 (both
// stored), and the BIRTH at 10 finds it stopped. The live run at 15 ends
// the stop before any stored value came (a slow flush). The stored stop at
// 2, before the first BIRTH, is a line of its own (2..5), the stored run
// at 7 ends the booked line (5..7), and the stored stop at 8 runs to 15:
// before, the stored stop at 2 was lost (the history was taken as
// stopped only from 5).
func TestSparkplugHistoricalStoredStopBeforeABirthsStopFoundOnAfterItsEnd(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, restart := range []bool{false, true} {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.birth(5, run(false, 5))
		h.birth(10, run(false, 10))
		h.send(15, run(true, 15))
		h.want("the live stop", Event{Kind: EventStopped, Start: at(5)}, Event{Kind: EventRunning, Start: at(5), End: at(15)})
		if restart {
			h.restart()
		}
		h.send(15, stored(run(false, 2)))
		if restart {
			h.restart()
		}
		h.send(15, stored(run(true, 7)), stored(run(false, 8)))
		h.want("the history",
			Event{Kind: EventRunning, Start: at(2), End: at(5), Historical: true},
			Event{Kind: EventEndStored, Start: at(5), End: at(7), BookedEnd: at(15)},
			Event{Kind: EventRunning, Start: at(8), End: at(15), Historical: true})
	}
}

// The same with a live stop (1 to 1.5) before: a stored stop before that
// stop's end, its run not stored, is an earlier outage's, not the one the
// BIRTH's stop goes on from: not booked.
func TestSparkplugHistoricalStoredStopBeforeABirthsStopFoundOnAfterItsEndOlder(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	h := newSPHist(t)
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.send(1.5, run(true, 1.5))
	h.birth(5, run(false, 5))
	h.birth(10, run(false, 10))
	h.send(15, run(true, 15))
	h.want("the live stops", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(1.5)},
		Event{Kind: EventStopped, Start: at(5)}, Event{Kind: EventRunning, Start: at(5), End: at(15)})
	h.send(15, stored(run(false, 0.5)), stored(run(true, 7)), stored(run(false, 8)))
	h.want("the history",
		Event{Kind: EventEndStored, Start: at(5), End: at(7), BookedEnd: at(15)},
		Event{Kind: EventRunning, Start: at(8), End: at(15), Historical: true})
}
