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

// The press stops at 2 (stored) while the edge node is away; the BIRTH at
// 10 says stopped, and the history begins (the stored stop). The node
// loses the broker again before the rest; the press runs at 15 (stored),
// and the BIRTH at 20 says running: that BIRTH ends the stop (its line
// 2..20). The rest of the first outage's history, then the second's, come
// after: the stored run at 4 ends the line there, the stored stop 5..6 is
// a line of its own, and the stored stop at 7 runs to the BIRTH (its run
// is the second outage's first stored value), ended at 15. Before, the
// second outage's stored run ended the line at 2 again, at 15: one line
// 2..15 over the line 5..6 (that minute booked twice).
func TestSparkplugHistoricalStoredRunOfALaterOutageDoesNotEndACorrectedLineAgain(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, restart := range []bool{false, true} {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.birth(10, run(false, 10))
		h.send(10, stored(run(false, 2)))
		h.birth(20, run(true, 20))
		h.want("the BIRTHs", Event{Kind: EventStopped, Start: at(10)}, Event{Kind: EventRunning, Start: at(2), End: at(20)})
		h.send(20, stored(run(true, 4)), stored(run(false, 5)), stored(run(true, 6)), stored(run(false, 7)))
		if restart {
			h.restart()
		}
		h.send(20, stored(run(true, 15)))
		h.want("the history",
			Event{Kind: EventEndStored, Start: at(2), End: at(4), BookedEnd: at(20)},
			Event{Kind: EventRunning, Start: at(5), End: at(6), Historical: true},
			Event{Kind: EventRunning, Start: at(7), End: at(20), Historical: true},
			Event{Kind: EventEndStored, Start: at(7), End: at(15), BookedEnd: at(20)})
		// A replay after the next BIRTH books nothing.
		h.birth(30, run(true, 30))
		h.send(30, stored(run(false, 2)), stored(run(true, 4)), stored(run(false, 5)), stored(run(true, 6)), stored(run(false, 7)), stored(run(true, 15)))
		h.want("the replay")
	}
}

// A stop a BIRTH began, ended by a later BIRTH (running) before the
// history came: the stored stop it went on from, before the BIRTH that
// began it, is a line of its own, and the later outage's stored run ends
// the booked line. "split": the live stop at 1 ended at its stored run
// at 3 (the BIRTH at 10 found it on), the stored stop at 5 comes only
// after the BIRTHs at 20 (stopped) and 25 (running); before, 5..10 was
// lost. "plain": the stop begun at the BIRTH at 10, from the stored stop
// at 5 (before the change too).
func TestSparkplugHistoricalStoredStopBeforeABirthsStopEndedByABirth(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	t.Run("split", func(t *testing.T) {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(false, 10))
		h.send(10, stored(run(true, 3)))
		h.birth(20, run(false, 20))
		h.birth(25, run(true, 25))
		h.want("the stop, split, and the BIRTHs", Event{Kind: EventStopped, Start: at(1)},
			Event{Kind: EventRunning, Start: at(1), End: at(3), Stored: true}, Event{Kind: EventStopped, Start: at(10), Stored: true},
			Event{Kind: EventRunning, Start: at(10), End: at(25)})
		h.restart()
		h.send(25, stored(run(false, 5)), stored(run(true, 22)))
		h.want("the history",
			Event{Kind: EventRunning, Start: at(5), End: at(10), Historical: true},
			Event{Kind: EventEndStored, Start: at(10), End: at(22), BookedEnd: at(25)})
	})
	t.Run("plain", func(t *testing.T) {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.birth(10, run(false, 10))
		h.birth(15, run(true, 15))
		h.want("the BIRTHs", Event{Kind: EventStopped, Start: at(10)}, Event{Kind: EventRunning, Start: at(10), End: at(15)})
		h.send(15, stored(run(false, 5)))
		h.restart()
		h.send(15, stored(run(true, 12)))
		h.want("the history",
			Event{Kind: EventRunning, Start: at(5), End: at(10), Historical: true},
			Event{Kind: EventEndStored, Start: at(10), End: at(12), BookedEnd: at(15)})
	})
}

// The live stop at 1 (J), open when the edge node lost the broker, runs at
// 4 and stops at 6 (M), both stored; the BIRTH at 10 finds it stopped.
// The stored run comes first (the stop, split there, goes on from the
// BIRTH), then the live run at 15, then the stored stop (a slow flush):
// that stored stop runs to the BIRTH (a line of its own, 6..10), as the
// line booked ran from the BIRTH; a stored run after it, in a later
// message, ends it there. Before, 6..10 was lost (the split's stop began
// at the BIRTH and its stored start came after its end).
func TestSparkplugHistoricalStoredStopAfterASplitStopEndedLive(t *testing.T) {
	run, code, at, stored := spRun, spCode, spAt, spStored
	for _, more := range []bool{false, true} {
		h := newSPHist(t)
		h.send(0, run(true, 0), code("", 0))
		h.send(1, code("J", 1), run(false, 1))
		h.birth(10, run(false, 10), code("M", 10))
		h.send(10, stored(code("", 4)), stored(run(true, 4)))
		h.restart()
		h.send(15, run(true, 15), code("", 15))
		h.want("the stored run and the live one", Event{Kind: EventStopped, Start: at(1), Reason: "J"},
			Event{Kind: EventRunning, Start: at(1), End: at(4), Reason: "J", Stored: true},
			Event{Kind: EventStopped, Start: at(10), Reason: "M", Stored: true},
			Event{Kind: EventRunning, Start: at(10), End: at(15), Reason: "M"})
		h.restart()
		h.send(15, stored(code("M", 6)), stored(run(false, 6)))
		h.want("the stored stop", Event{Kind: EventRunning, Start: at(6), End: at(10), Reason: "M", Historical: true})
		if more {
			h.send(15, stored(run(true, 8)), stored(code("K", 9)), stored(run(false, 9)))
			h.want("a stored run and stop more",
				Event{Kind: EventEndStored, Start: at(6), End: at(8), BookedEnd: at(10), Reason: "M"},
				Event{Kind: EventRunning, Start: at(9), End: at(10), Reason: "K", Historical: true})
		}
	}
}

// As above, but a BIRTH at 20 finds the stop begun at the BIRTH at 10 on
// (the edge node lost the broker again, the press still stopped) before
// the live run at 25 ends it: the stored stop at 5 still runs to 10.
func TestSparkplugHistoricalStoredStopAfterASplitStopFoundOnEndedLive(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	h := newSPHist(t)
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.birth(10, run(false, 10))
	h.send(10, stored(run(true, 3)))
	h.birth(20, run(false, 20))
	h.send(25, run(true, 25))
	h.want("the live stop, split, and its end", Event{Kind: EventStopped, Start: at(1)},
		Event{Kind: EventRunning, Start: at(1), End: at(3), Stored: true}, Event{Kind: EventStopped, Start: at(10), Stored: true},
		Event{Kind: EventRunning, Start: at(10), End: at(25)})
	h.restart()
	h.send(25, stored(run(false, 5)))
	h.want("the stored stop", Event{Kind: EventRunning, Start: at(5), End: at(10), Historical: true})
}
