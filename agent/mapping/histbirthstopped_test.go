package mapping

import "testing"

// The press stops at 1 (code J), live; the edge node loses the broker.
// Meanwhile the press runs at 4 and stops at 6 (code M), both stored. The
// BIRTH at 10 says stopped (code M): the stop goes on. The stored values
// come after it, in two messages, the agent restarting between them and
// between the BIRTH and the first. The stored run ends the stop at 4 (its
// line 1..4, code J; before, one line 1..15), and the machine's stop is
// then one begun at the BIRTH, which goes on from the stored stop at 6
// (storedStart): its line 6..15 when it ends. A replay of the history after
// the next reconnect books nothing more.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFound(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.send(1, code("J", 1), run(false, 1))
	h.want("the live stop", Event{Kind: EventStopped, Start: at(1), Reason: "J"})
	h.birth(10, run(false, 10), code("M", 10))
	h.want("the BIRTH")
	h.restart()
	h.send(10, stored(code("", 4)), stored(run(true, 4)))
	h.want("the stored run",
		Event{Kind: EventRunning, Start: at(1), End: at(4), Reason: "J", Loss: "Jam", Stored: true},
		Event{Kind: EventStopped, Start: at(10), Reason: "M", Stored: true})
	h.restart()
	h.send(10, stored(code("M", 6)), stored(run(false, 6)))
	h.want("the stored stop")
	h.send(15, run(true, 15), code("", 15))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(6), End: at(15), Reason: "M"})
	// Back after another outage (running): the whole history again.
	h.birth(20, run(true, 20), code("", 20))
	h.send(20, stored(code("", 4)), stored(run(true, 4)), stored(code("M", 6)), stored(run(false, 6)))
	h.restart()
	h.send(21, stored(run(true, 4)))
	h.want("the history replayed")
	h.send(25, code("J", 25), run(false, 25))
	h.send(26, run(true, 26))
	h.want("the next live stop", Event{Kind: EventStopped, Start: at(25), Reason: "J"}, Event{Kind: EventRunning, Start: at(25), End: at(26), Reason: "J"})
}

// Several stored stops and runs within the stop: the first run ends it,
// the stored stops between are lines of their own, the last goes on into
// the BIRTH's. A stored stop before the first run (the edge node storing
// its state again) does not hide it. With no stored stop after the last
// stored run (one the store lost), the stop goes on from the BIRTH.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundSeveral(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	start := func(t *testing.T) *spHist {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(false, 10))
		h.want("the live stop", Event{Kind: EventStopped, Start: at(1)})
		return h
	}
	t.Run("several", func(t *testing.T) {
		h := start(t)
		h.send(10, stored(run(false, 1.5)), stored(run(true, 2)), stored(run(false, 3)))
		h.send(10, stored(run(true, 4)), stored(run(false, 6)))
		h.want("the history",
			Event{Kind: EventRunning, Start: at(1), End: at(2), Stored: true},
			Event{Kind: EventStopped, Start: at(10), Stored: true},
			Event{Kind: EventRunning, Start: at(3), End: at(4), Historical: true})
		h.send(15, run(true, 15))
		h.want("the stop's end", Event{Kind: EventRunning, Start: at(6), End: at(15)})
	})
	t.Run("no stored stop after the run", func(t *testing.T) {
		h := start(t)
		h.send(10, stored(run(true, 4)))
		h.want("the stored run", Event{Kind: EventRunning, Start: at(1), End: at(4), Stored: true}, Event{Kind: EventStopped, Start: at(10), Stored: true})
		h.send(15, run(true, 15))
		h.want("the stop's end", Event{Kind: EventRunning, Start: at(10), End: at(15)})
	})
	t.Run("a run before the stop", func(t *testing.T) {
		h := start(t)
		h.send(10, stored(run(true, 0.5)))
		h.want("nothing within the stop")
		h.send(15, run(true, 15))
		h.want("the stop's end", Event{Kind: EventRunning, Start: at(1), End: at(15)})
	})
}

// With block_workcenter the live stop opened its line at 1: the stored run
// closes it at 4, and the BIRTH's stop opens one at 10 (its start keys it);
// the stored part from 6 is a line of its own when the stop ends.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundOpenLine(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.st.Machines["p1"].LineOpened = true // as the agent does for block_workcenter
	h.birth(10, run(false, 10))
	h.send(10, stored(run(true, 4)), stored(run(false, 6)))
	h.want("the history", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(4), Stored: true}, Event{Kind: EventStopped, Start: at(10), Stored: true})
	h.st.Machines["p1"].LineOpened = true // the agent opened the BIRTH's line
	h.send(15, run(true, 15))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(6), End: at(10), Historical: true}, Event{Kind: EventRunning, Start: at(10), End: at(15)})
}

// The history comes after the live run at 15 ended the stop (a slow flush),
// or only part of it before: the stored run ends the line booked to 15 at
// its stored end (EventEndStored), the stored stops after it are lines of
// their own, and the last, whose run was not stored, runs to 15 (the
// machine was stopped at the BIRTH and until then): booked at the end of
// the message, and ended by a stored run that comes in a later one.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundAfterItsEnd(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	t.Run("all after", func(t *testing.T) {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(false, 10))
		h.send(15, run(true, 15))
		h.want("the live stop", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(15)})
		h.restart()
		h.send(15, stored(run(true, 4)), stored(run(false, 6)))
		h.want("the stored run and stop",
			Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(15)},
			Event{Kind: EventRunning, Start: at(6), End: at(15), Historical: true})
		h.restart()
		h.send(15, stored(run(true, 7)), stored(run(false, 8)), stored(run(true, 8.5)), stored(run(false, 9)))
		h.want("a later message",
			Event{Kind: EventEndStored, Start: at(6), End: at(7), BookedEnd: at(15)},
			Event{Kind: EventRunning, Start: at(8), End: at(8.5), Historical: true},
			Event{Kind: EventRunning, Start: at(9), End: at(15), Historical: true})
		h.birth(20, run(true, 20))
		h.send(20, stored(run(true, 4)), stored(run(false, 6)), stored(run(true, 7)), stored(run(false, 8)))
		h.want("the history replayed")
	})
	t.Run("part before", func(t *testing.T) {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(false, 10))
		h.send(10, stored(run(true, 4)), stored(run(false, 6)))
		h.send(15, run(true, 15))
		h.want("the first message and the live run",
			Event{Kind: EventStopped, Start: at(1)},
			Event{Kind: EventRunning, Start: at(1), End: at(4), Stored: true},
			Event{Kind: EventStopped, Start: at(10), Stored: true},
			Event{Kind: EventRunning, Start: at(6), End: at(15)})
		h.restart()
		h.send(15, stored(run(true, 7)), stored(run(false, 8)))
		h.want("the second message",
			Event{Kind: EventEndStored, Start: at(6), End: at(7), BookedEnd: at(15)},
			Event{Kind: EventRunning, Start: at(8), End: at(15), Historical: true})
	})
	t.Run("only stops before", func(t *testing.T) {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(false, 10))
		h.send(10, stored(run(false, 2)))
		h.send(15, run(true, 15))
		h.want("the live stop", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(15)})
		h.send(15, stored(run(true, 4)), stored(run(false, 6)))
		h.want("the stored run and stop",
			Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(15)},
			Event{Kind: EventRunning, Start: at(6), End: at(15), Historical: true})
	})
}

// The edge node loses the broker again before it sent what it stored: the
// next BIRTH (stopped still) comes, then the stored values of both outages.
// The first outage's run ends the stop; its stored stop runs to the second
// outage's stored run; the second's stored stop goes on into the BIRTH's.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundTwoOutages(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.birth(10, run(false, 10))
	h.birth(20, run(false, 20))
	h.restart()
	h.send(20, stored(run(true, 4)), stored(run(false, 6)))
	h.send(20, stored(run(true, 14)), stored(run(false, 16)))
	h.want("both outages' history",
		Event{Kind: EventStopped, Start: at(1)},
		Event{Kind: EventRunning, Start: at(1), End: at(4), Stored: true},
		Event{Kind: EventStopped, Start: at(20), Stored: true},
		Event{Kind: EventRunning, Start: at(6), End: at(14), Historical: true})
	h.send(25, run(true, 25))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(16), End: at(25)})
}

// The edge node loses the broker twice while the press is stopped (from 3,
// live), each BIRTH finding it stopped; it runs at 25, live, before the
// stored values come. The first message ends the line at the stored run (8)
// and books the stored stop from 10 to 17.5. The press stops again at 27,
// live, and the edge node loses the broker once more (its BIRTH at 31.5
// says running) before its next message: the stored stop at 20.5, whose
// run was not stored, then the later outage's run at 30.5. The stored stop
// runs to 25 (booked as that later outage's value comes, in the same
// message), and the run at 30.5 ends the stop from 27.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundTailThenNextOutage(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(3, run(false, 3))
	h.birth(11.5, run(false, 11.5))
	h.birth(22.5, run(false, 22.5))
	h.send(25, run(true, 25))
	h.want("the live stop", Event{Kind: EventStopped, Start: at(3)}, Event{Kind: EventRunning, Start: at(3), End: at(25)})
	h.send(27, stored(run(true, 8)), stored(run(false, 10)), stored(run(true, 17.5)))
	h.want("the first message",
		Event{Kind: EventEndStored, Start: at(3), End: at(8), BookedEnd: at(25)},
		Event{Kind: EventRunning, Start: at(10), End: at(17.5), Historical: true})
	h.send(27, run(false, 27))
	h.birth(31.5, run(true, 31.5))
	h.want("the next live stop", Event{Kind: EventStopped, Start: at(27)}, Event{Kind: EventRunning, Start: at(27), End: at(31.5)})
	h.restart()
	h.send(35, stored(run(false, 20.5)), stored(run(true, 30.5)))
	h.want("the stored stop, then the next outage's run",
		Event{Kind: EventRunning, Start: at(20.5), End: at(25), Historical: true},
		Event{Kind: EventEndStored, Start: at(27), End: at(30.5), BookedEnd: at(31.5)})
}

// A stop a BIRTH began (at 19: the press ran at the BIRTH before), found on
// by the next BIRTH (38.5), goes on from a stored stop (3.5, in the first
// message) and ends live at 40 (its line from 3.5). The rest of the stored
// values come after: the stored run at 10 ends that line there, the stored
// stops after it (18 to 26, 30.5 to 31.5) are lines of their own — also
// the one over the first BIRTH's stop, which the line no longer holds — and
// the last (37) runs to 40.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundBegunAtABirth(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.birth(14.5, run(true, 14.5))
	h.birth(19, run(false, 19))
	h.birth(38.5, run(false, 38.5))
	h.send(38.5, stored(run(false, 3.5)))
	h.send(40, run(true, 40))
	h.want("the stop", Event{Kind: EventStopped, Start: at(19)}, Event{Kind: EventRunning, Start: at(3.5), End: at(40)})
	h.restart()
	h.send(40, stored(run(true, 10)), stored(run(false, 18)), stored(run(true, 26)), stored(run(false, 30.5)), stored(run(true, 31.5)), stored(run(false, 37)))
	h.want("the rest",
		Event{Kind: EventEndStored, Start: at(3.5), End: at(10), BookedEnd: at(40)},
		Event{Kind: EventRunning, Start: at(18), End: at(26), Historical: true},
		Event{Kind: EventRunning, Start: at(30.5), End: at(31.5), Historical: true},
		Event{Kind: EventRunning, Start: at(37), End: at(40), Historical: true})
}

// The history of the outage a stopped BIRTH found the stop open at has
// begun (a stored stop, restated), when the edge node loses the broker
// again; the next BIRTH says running and ends the stop (to 20). The rest of
// that history then comes: its run ends the line at 4, and the stored stop
// from 6 to 7 is a line of its own.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundThenARunningBirth(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.birth(10, run(false, 10))
	h.send(10, stored(run(false, 2)))
	h.birth(20, run(true, 20))
	h.want("the stop", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(20)})
	h.restart()
	h.send(20, stored(run(true, 4)), stored(run(false, 6)), stored(run(true, 7)))
	h.want("the rest",
		Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(20)},
		Event{Kind: EventRunning, Start: at(6), End: at(7), Historical: true})
}

// A stop a BIRTH began (at 10, the press running before), going on from a
// stored stop (4): its line from 4 to the live run at 15. A stored run that
// comes after that (6) ends the line there, and the stored stop after it (8)
// runs to 15 (before, both were passed over: one line from 4 to 15). With
// block_workcenter the stored part, 4 to 10, is the line corrected, and the
// stored stop runs to 10, where the open line began.
func TestSparkplugHistoricalStopIntoTheBirthRunStoredAfterItsEnd(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, open := range []bool{false, true} {
		h := stopFromStoredAtBirth(t, open)
		h.send(15, run(true, 15))
		h.got()
		h.restart()
		h.send(15, stored(run(true, 6)), stored(run(false, 8)))
		if !open {
			h.want("the stored run and stop",
				Event{Kind: EventEndStored, Start: at(4), End: at(6), BookedEnd: at(15)},
				Event{Kind: EventRunning, Start: at(8), End: at(15), Historical: true})
			continue
		}
		h.want("the stored run and stop, the open line",
			Event{Kind: EventEndStored, Start: at(4), End: at(6), BookedEnd: at(10)},
			Event{Kind: EventRunning, Start: at(8), End: at(10), Historical: true})
	}
}

// A stop a BIRTH began (at 10), going on from a stored stop (4), is found
// on by the next BIRTH (20): that outage's stored run (14) ends it, from the
// stored stop (4 to 14), and its stored stop (16) is where the stop the
// second BIRTH found goes on from. With block_workcenter the first BIRTH's
// stop opened its line at 10: the stored part (4 to 10) is a line of its
// own, the open line is closed at 14, and the second BIRTH's stop opens one
// at 20.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFoundGoingOnFromAStoredStop(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, open := range []bool{false, true} {
		h := stopFromStoredAtBirth(t, open)
		h.birth(20, run(false, 20))
		h.restart()
		h.send(20, stored(run(true, 14)), stored(run(false, 16)))
		if open {
			h.want("the second outage's history",
				Event{Kind: EventStopped, Start: at(10)},
				Event{Kind: EventRunning, Start: at(4), End: at(10), Historical: true},
				Event{Kind: EventRunning, Start: at(10), End: at(14), Stored: true},
				Event{Kind: EventStopped, Start: at(20), Stored: true})
			h.st.Machines["p1"].LineOpened = true
		} else {
			h.want("the second outage's history",
				Event{Kind: EventStopped, Start: at(10)},
				Event{Kind: EventRunning, Start: at(4), End: at(14), Stored: true},
				Event{Kind: EventStopped, Start: at(20), Stored: true})
		}
		h.send(25, run(true, 25))
		if open {
			h.want("the stop's end", Event{Kind: EventRunning, Start: at(16), End: at(20), Historical: true}, Event{Kind: EventRunning, Start: at(20), End: at(25)})
			continue
		}
		h.want("the stop's end", Event{Kind: EventRunning, Start: at(16), End: at(25)})
	}
}
