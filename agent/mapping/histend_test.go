package mapping

import (
	"fmt"
	"slices"
	"testing"
)

// The press stops at 1 (code J), live; the edge node loses the broker at 2.
// Meanwhile the press runs at 4 (its code cleared), stops at 6 (code M) and
// runs at 7, all stored. The BIRTH at 10 says running: it ends the stop, to
// 10. The stored values come after it, in several messages, the agent
// restarting between them: the stored run at 4 ends the stop there
// (EventEndStored, its line's start kept), and the stored stop from 6 to 7
// is a line of its own (before, it was taken as within the stop booked to
// 10). A replay of the history after the next reconnect books nothing more,
// and the next live stop is booked as any.
func TestSparkplugHistoricalRunEndsTheBirthsStop(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.send(1, code("J", 1), run(false, 1))
	h.want("the live stop", Event{Kind: EventStopped, Start: at(1), Reason: "J"})
	h.birth(10, run(true, 10), code("", 10))
	h.want("the BIRTH ends it", Event{Kind: EventRunning, Start: at(1), End: at(10), Reason: "J", Loss: "Jam"})
	h.send(10, stored(code("", 4)))
	h.restart()
	h.want("the stored code")
	h.send(10, stored(run(true, 4)))
	h.want("the stored run", Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(10), Reason: "J", Loss: "Jam"})
	h.restart()
	h.send(10, stored(code("M", 6)), stored(run(false, 6)))
	h.send(10, stored(run(true, 7)), stored(code("", 7)))
	h.want("the next stored stop", Event{Kind: EventRunning, Start: at(6), End: at(7), Reason: "M", Historical: true})
	// Back after another outage (running): the whole history again.
	h.birth(20, run(true, 20), code("", 20))
	h.send(20, stored(code("", 4)), stored(run(true, 4)), stored(code("M", 6)), stored(run(false, 6)), stored(run(true, 7)), stored(code("", 7)))
	h.restart()
	h.send(21, stored(run(true, 4)))
	h.want("the history replayed")
	h.send(25, code("J", 25), run(false, 25))
	h.send(26, run(true, 26))
	h.want("the next live stop", Event{Kind: EventStopped, Start: at(25), Reason: "J"}, Event{Kind: EventRunning, Start: at(25), End: at(26), Reason: "J"})
}

// The stored run is taken only within the stop, and once: one stamped at
// the BIRTH (or later) or before the stop's start (an earlier outage's,
// flushed late) ends nothing, nor does one after a first stored run; a
// BIRTH stamped with the run's time booked the right end already. A stored
// stop before the first stored run (the edge node storing its state again)
// does not hide it.
func TestSparkplugHistoricalRunEndsTheBirthsStopWithin(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	start := func(t *testing.T, birthRun float64) *spHist {
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.send(1, run(false, 1))
		h.birth(10, run(true, birthRun))
		h.want("the BIRTH ends the stop", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(birthRun)})
		return h
	}
	t.Run("at the BIRTH", func(t *testing.T) {
		h := start(t, 10)
		h.send(10, stored(run(true, 10)))
		h.want("a run at the BIRTH")
	})
	t.Run("not after the stop's start", func(t *testing.T) {
		h := start(t, 10)
		h.send(10, stored(run(true, 0.5)))
		h.want("a run before the stop")
		h.send(10, stored(run(true, 4)))
		h.want("the run within", Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(10)})
	})
	t.Run("the BIRTH stamped with the run's time", func(t *testing.T) {
		h := start(t, 4)
		h.send(10, stored(run(true, 4)))
		h.want("the run the BIRTH had")
	})
	t.Run("an earlier outage's history first", func(t *testing.T) {
		// Back at 0.5 from an outage before the stop, running: its stored
		// stop (0.2 to 0.3) comes only now, before the stop's outage's.
		h := newSPHist(t)
		h.send(0, run(true, 0))
		h.birth(0.5, run(true, 0.5))
		h.send(1, run(false, 1))
		h.birth(10, run(true, 10))
		h.got()
		h.send(10, stored(run(false, 0.2)), stored(run(true, 0.3)))
		h.send(10, stored(run(true, 4)), stored(run(false, 6)), stored(run(true, 7)))
		h.want("both outages' history",
			Event{Kind: EventRunning, Start: at(0.2), End: at(0.3), Historical: true},
			Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(10)},
			Event{Kind: EventRunning, Start: at(6), End: at(7), Historical: true})
	})
	t.Run("stopped stored first", func(t *testing.T) {
		h := start(t, 10)
		h.send(10, stored(run(false, 3)))
		h.send(10, stored(run(true, 4)), stored(run(true, 5)))
		h.want("the first stored run", Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(10)})
		h.send(10, stored(run(false, 5.5)))
		h.send(10, stored(run(true, 6)))
		h.want("a stored stop after it", Event{Kind: EventRunning, Start: at(5.5), End: at(6), Historical: true})
	})
}

// The edge node loses the broker again before it sent what it stored: the
// next BIRTH (running) comes, then the stored values of both outages. The
// first outage's run ends the stop the first BIRTH ended; the second's stop
// is a line of its own. The press stops again live, and a BIRTH after a
// third outage ends that stop: its stored run ends it, and a replay of the
// first outage's history ends neither again. A later outage's stored run
// never ends a stop a BIRTH ended long before (one whose run was not stored).
func TestSparkplugHistoricalRunEndsTheBirthsStopTwoOutages(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.birth(10, run(true, 10))
	h.want("the first BIRTH", Event{Kind: EventStopped, Start: at(1)}, Event{Kind: EventRunning, Start: at(1), End: at(10)})
	h.birth(20, run(true, 20))
	h.restart()
	h.send(20, stored(run(true, 4)), stored(run(false, 14)))
	h.send(20, stored(run(true, 16)))
	h.want("both outages' history",
		Event{Kind: EventEndStored, Start: at(1), End: at(4), BookedEnd: at(10)},
		Event{Kind: EventRunning, Start: at(14), End: at(16), Historical: true})
	h.send(30, run(false, 30))
	h.birth(40, run(true, 40))
	h.want("the third BIRTH", Event{Kind: EventStopped, Start: at(30)}, Event{Kind: EventRunning, Start: at(30), End: at(40)})
	h.send(40, stored(run(true, 4)), stored(run(false, 14)), stored(run(true, 16)))
	h.want("the first history replayed")
	h.send(40, stored(run(true, 33)))
	h.want("the third outage's run", Event{Kind: EventEndStored, Start: at(30), End: at(33), BookedEnd: at(40)})
	// A stop the BIRTH ends whose run was not stored (a code was): the
	// next outage's history, in the same flush or later, does not end it.
	h.send(50, run(false, 50))
	h.birth(60, run(true, 60))
	h.got()
	h.birth(70, run(true, 70))
	h.send(70, stored(code("J", 55)), stored(run(false, 64)), stored(run(true, 66)))
	h.want("the next outage's stop", Event{Kind: EventRunning, Start: at(64), End: at(66), Reason: "J", Historical: true})
	h.send(80, run(false, 80))
	h.birth(90, run(true, 90))
	h.got()
	h.birth(100, run(true, 100))
	h.send(100, stored(run(false, 94)), stored(run(true, 96)))
	h.want("a later outage's stop", Event{Kind: EventRunning, Start: at(94), End: at(96), Historical: true})
}

// The history comes after a live stop that ended since (a slow flush): the
// stored run still ends the stop the BIRTH ended (its line is keyed by its
// start), and the stored stop after it is a line of its own. (Before, both
// were taken as within the stop booked to the BIRTH.)
func TestSparkplugHistoricalRunEndsTheBirthsStopAfterALiveStop(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(1, run(false, 1))
	h.birth(10, run(true, 10))
	h.send(12, run(false, 12))
	h.send(13, run(true, 13))
	h.got()
	h.send(13, stored(run(true, 3)), stored(run(false, 4)), stored(run(true, 5)))
	h.want("the stored run and stop",
		Event{Kind: EventEndStored, Start: at(1), End: at(3), BookedEnd: at(10)},
		Event{Kind: EventRunning, Start: at(4), End: at(5), Historical: true})
}

// stopFromStoredAtBirth is a press running at 0, a BIRTH at 10 that finds
// it stopped, and that outage's history: a stored stop at 4, the stop the
// BIRTH began going on from it. With open, the BIRTH's stop opened its line
// (as the agent does for block_workcenter).
func stopFromStoredAtBirth(t *testing.T, open bool) *spHist {
	t.Helper()
	run, stored := spRun, spStored
	h := newSPHist(t)
	h.send(0, run(true, 0))
	h.birth(10, run(false, 10))
	if open {
		h.st.Machines["p1"].LineOpened = true
	}
	h.send(10, stored(run(false, 4)))
	return h
}

// A stop a BIRTH began, going on from a stored stop (at 4: its line from
// 4), ended by the BIRTH after the next outage (at 20): that outage's
// stored run (15) ends it. With block_workcenter the BIRTH's stop opened a
// line at 10; the stored part is a line of its own, and the open line's
// end is the one corrected.
func TestSparkplugHistoricalRunEndsTheBirthsStopBegunAtABirth(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, open := range []bool{false, true} {
		h := stopFromStoredAtBirth(t, open)
		h.restart()
		h.birth(20, run(true, 20))
		h.send(20, stored(run(true, 15)))
		if !open {
			h.want("one line",
				Event{Kind: EventStopped, Start: at(10)},
				Event{Kind: EventRunning, Start: at(4), End: at(20)},
				Event{Kind: EventEndStored, Start: at(4), End: at(15), BookedEnd: at(20)})
			continue
		}
		h.want("the open line",
			Event{Kind: EventStopped, Start: at(10)},
			Event{Kind: EventRunning, Start: at(4), End: at(10), Historical: true},
			Event{Kind: EventRunning, Start: at(10), End: at(20)},
			Event{Kind: EventEndStored, Start: at(10), End: at(15), BookedEnd: at(20)})
	}
}

// A BIRTH stamps a value with the time it last changed (Ignition), and an
// edge node that stores a run and then sends its BIRTH within a
// millisecond (the soak's) gives it the stored run's time too: the run
// that ended a stop stored while the broker was away has the time of the
// BIRTH's run state. It ends that stop all the same: the stop is a line of
// its own, with its stored reason. Before, that run was taken as a live
// value (not older than the current run state), changing nothing, and the
// stored stop was left without its run: no line (a 60-minute soak lost one
// so). With block_workcenter too, and across restarts.
func TestSparkplugHistoricalRunStampedAtTheBirthsTimeEndsItsStop(t *testing.T) {
	run, code, stored := spRun, spCode, spStored
	for _, block := range []bool{false, true} {
		// The BIRTH at 10 stamps the run state with its last change (8),
		// or (the soak's) with the time the run was stored (10).
		for _, ranAt := range []float64{8, 10} {
			spSteps(t, block, func(h *spHist, step func(func())) {
				step(func() { h.send(0, run(true, 0), code("", 0)) })
				step(func() { h.birth(10, run(true, ranAt), code("", ranAt)) })
				step(func() {
					h.send(10, stored(code("J", 2)), stored(run(false, 2)), stored(run(true, 3)), stored(code("", 3)))
				})
				step(func() { h.send(10, stored(code("J", 5)), stored(run(false, 5))) })
				step(func() { h.send(10, stored(run(true, ranAt)), stored(code("", ranAt))) })
				step(func() { h.send(12, code("J", 12), run(false, 12)) })
				step(func() { h.send(13, run(true, 13), code("", 13)) })
			}, func(t *testing.T, got []string, all []Event) {
				want := []string{"12..13", "2..3", "5.." + fmt.Sprint(ranAt)}
				if !slices.Equal(got, want) {
					t.Errorf("block %v, run at %v: lines %v, want %v (events %+v)", block, ranAt, got, want, all)
				}
				for _, e := range all {
					if e.Kind == EventRunning && e.Historical && e.Reason != "J" {
						t.Errorf("block %v, run at %v: stored stop %v..%v with reason %q, want J", block, ranAt, e.Start, e.End, e.Reason)
					}
				}
			})
		}
	}
}
