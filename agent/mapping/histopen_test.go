package mapping

import (
	"testing"

	"github.com/plantedge/plantedge/internal/sptest"
)

// restart keeps only what the agent persists of the mapping state (each
// machine's Marshal), as a restart or a kill between two messages does.
func (h *spHist) restart() {
	h.t.Helper()
	st := NewState()
	for id := range h.st.Machines {
		b, err := h.st.Marshal(id)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := st.Unmarshal(id, b); err != nil {
			h.t.Fatal(err)
		}
	}
	h.st = st
}

// The press runs; the edge node loses the broker at minute 1; the press
// stops at 4 (code J, both stored) and is still stopped at the BIRTH at 10,
// whose run state begins a stop at 10. The stored values come after the
// BIRTH, in several messages, an earlier stored stop (2 to 3) among them,
// and the agent restarts between two of them. The stop from 4 is booked
// once, from 4 to the live run at 15, with code J: nothing is booked for
// it before (more stored values may come); a replay of the history after
// the next reconnect books nothing again.
func TestSparkplugHistoricalStopIntoTheBirth(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10), code("J", 10))
	h.want("the BIRTH's stop", Event{Kind: EventStopped, Start: at(10), Reason: "J"})
	h.send(10, stored(run(false, 2)), stored(run(true, 3)))
	h.want("the earlier stored stop", Event{Kind: EventRunning, Start: at(2), End: at(3), Historical: true})
	h.restart()
	h.send(10, stored(code("J", 4)))
	h.send(10, stored(run(false, 4)))
	h.want("while the stop goes on")
	h.restart()
	h.send(15, run(true, 15), code("", 15))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(4), End: at(15), Reason: "J", Loss: "Jam"})
	// Back after another outage (running): the whole history again.
	h.birth(20, run(true, 20), code("", 20))
	h.send(20, stored(run(false, 2)), stored(run(true, 3)), stored(code("J", 4)), stored(run(false, 4)))
	h.restart()
	h.send(21, stored(code("J", 4)), stored(run(false, 4)))
	h.send(25, run(false, 25))
	h.send(26, run(true, 26))
	h.want("the history replayed",
		Event{Kind: EventStopped, Start: at(25)},
		Event{Kind: EventRunning, Start: at(25), End: at(26)})
}

// As above, but the BIRTH gives the stop code no value: the stored code
// (J, at 4) is the last known, and the stop's.
func TestSparkplugHistoricalStopIntoTheBirthStoredReason(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10))
	h.send(10, stored(code("J", 4)), stored(run(false, 4)))
	h.send(15, run(true, 15))
	h.want("the stop from the stored one",
		Event{Kind: EventStopped, Start: at(10)},
		Event{Kind: EventRunning, Start: at(4), End: at(15), Reason: "J", Loss: "Jam"})
}

// With block_workcenter, the BIRTH's stop opened a line at 10 (its start is
// its key in Odoo): the stored part, 4 to 10, is a line of its own with the
// stored code, booked when the stop ends, before the open line is closed.
func TestSparkplugHistoricalStopIntoTheBirthOpenLine(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10), code("M", 10))
	h.st.Machines["p1"].LineOpened = true // as the agent does for block_workcenter
	h.send(10, stored(code("J", 4)), stored(run(false, 4)))
	h.restart()
	h.send(15, run(true, 15))
	h.want("the stored part and the open line",
		Event{Kind: EventStopped, Start: at(10), Reason: "M"},
		Event{Kind: EventRunning, Start: at(4), End: at(10), Reason: "J", Loss: "Jam", Historical: true},
		Event{Kind: EventRunning, Start: at(10), End: at(15), Reason: "M"})
	// No code stored: it did not change while the edge node was away.
	h = newSPHist(t)
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10), code("M", 10))
	h.st.Machines["p1"].LineOpened = true
	h.send(10, stored(run(false, 4)))
	h.send(15, run(true, 15))
	h.want("no code stored",
		Event{Kind: EventStopped, Start: at(10), Reason: "M"},
		Event{Kind: EventRunning, Start: at(4), End: at(10), Reason: "M", Historical: true},
		Event{Kind: EventRunning, Start: at(10), End: at(15), Reason: "M"})
}

// A stored run after the stored stop, in a later message, ends it: that
// stop is a line of its own, and the next stored stop (8) is the one the
// BIRTH's goes on from.
func TestSparkplugHistoricalStopIntoTheBirthAfterMoreStored(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10), code("J", 10))
	h.got()
	h.send(10, stored(run(false, 4)))
	h.want("the first stored stop, its run not yet told")
	h.send(10, stored(run(true, 6)), stored(code("J", 8)), stored(run(false, 8)))
	h.want("the stored stop ended by a stored run", Event{Kind: EventRunning, Start: at(4), End: at(6), Historical: true})
	h.send(15, run(true, 15))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(8), End: at(15), Reason: "J", Loss: "Jam"})
}

// A stop open when the edge node lost the broker (from 0.5) and still open
// at the BIRTH ends at its stored run (2), and the stop the BIRTH found
// goes on from the stored stop after it (4): two lines (before, one from
// 0.5 to 15: the stop covered what was stored meanwhile). A stored stop of
// an earlier outage (17, its run never stored) is not taken into a later
// stop a BIRTH begins.
func TestSparkplugHistoricalStopIntoTheBirthCovered(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.send(0.5, run(false, 0.5))
	h.birth(10, run(false, 10))
	h.send(10, stored(run(true, 2)), stored(run(false, 4)))
	h.send(15, run(true, 15))
	h.want("the live stop", Event{Kind: EventStopped, Start: at(0.5)},
		Event{Kind: EventRunning, Start: at(0.5), End: at(2), Stored: true}, Event{Kind: EventStopped, Start: at(10), Stored: true},
		Event{Kind: EventRunning, Start: at(4), End: at(15)})
	h.birth(20, run(true, 20))
	h.send(20, stored(run(false, 17)))
	h.birth(30, run(false, 30))
	h.send(35, run(true, 35))
	h.want("a stop of the next outage", Event{Kind: EventStopped, Start: at(30)}, Event{Kind: EventRunning, Start: at(30), End: at(35)})
}

// A stored run state when the machine's run state has no time (the BIRTH
// gave the metric no value, and none came before) is no live value: it
// goes to the history like the others (a stored stop and its run are a
// line of their own), and the machine's run state stays unknown — it did
// not open a stop at a stored time. The stored code is the stored stop's.
func TestSparkplugHistoricalRunWithNoLiveRunTime(t *testing.T) {
	run, code, at, stored := spRun, spCode, spAt, spStored
	for _, birth := range []string{"none", "no run state", "a null run state"} {
		t.Run(birth, func(t *testing.T) {
			h := newSPHist(t)
			switch birth {
			case "no run state":
				h.birth(10, code("", 10))
			case "a null run state":
				h.birth(10, sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, IsNull: true, Timestamp: ms(spAt(10))}, code("", 10))
			}
			h.send(10, stored(code("J", 2)), stored(run(false, 2)), stored(run(true, 3)), stored(code("", 3)), stored(run(false, 5)))
			h.want(birth+": the stored stop", Event{Kind: EventRunning, Start: at(2), End: at(3), Reason: "J", Loss: "Jam", Historical: true})
			p1 := h.st.Machines["p1"]
			if p1.Running != nil || birth == "none" && p1.ReasonSet {
				t.Fatalf("%s: the current state taken from the history: running %v, reason %q (set %v)", birth, p1.Running, p1.Reason, p1.ReasonSet)
			}
			h.send(12, run(true, 12))
			h.want(birth + ": the first live run")
		})
	}
}

// The edge node loses the broker again while the press is still stopped:
// the next BIRTH (still stopped) and a replay of the first history book
// nothing; a code stored in the second outage (M, at 16) begins that
// outage's history, which goes on from the stored stop (4): the stop is
// one line from 4, booked once, with the last code.
func TestSparkplugHistoricalStopIntoTheBirthTwoOutages(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	h.birth(10, run(false, 10))
	h.send(10, stored(run(false, 2)), stored(run(true, 3)), stored(code("J", 4)), stored(run(false, 4)))
	h.want("the first history", Event{Kind: EventStopped, Start: at(10)}, Event{Kind: EventRunning, Start: at(2), End: at(3), Historical: true})
	h.birth(20, run(false, 20))
	h.send(20, stored(run(false, 2)), stored(run(true, 3)), stored(code("J", 4)), stored(run(false, 4)))
	h.want("the first history replayed")
	h.birth(30, run(false, 30))
	h.send(30, stored(code("M", 26)))
	h.restart()
	h.send(35, run(true, 35))
	h.want("the stop's end", Event{Kind: EventRunning, Start: at(4), End: at(35), Reason: "M"})
}

// The BIRTH gives the run state no value: the stored values are history
// (the stored stop at 4, its run not stored), and the machine is then seen
// live, running at 6, stopping from 7 to 8. That history ends at the first
// live value: the next outage's stored values (a stop from 9 to 9.5, or a
// stop at 9 that runs into the stop the next BIRTH begins) are a history
// of their own. Before, the first history stayed open (its From was zero,
// made the next outage's live time when its first stored value came):
// the stored stop at 9 was passed over, the one at 4 ended by the next
// outage's run, and 4 to 7 booked over a time the machine was seen
// running.
func TestSparkplugHistoricalNoRunTimeThenNextOutage(t *testing.T) {
	run, at, stored := spRun, spAt, spStored
	for _, next := range []string{"running", "stopped"} {
		t.Run(next, func(t *testing.T) {
			h := newSPHist(t)
			h.birth(5)
			h.send(5, stored(run(true, 3)), stored(run(false, 4)))
			h.want("the first history")
			h.send(6, run(true, 6))
			h.send(7, run(false, 7))
			h.restart()
			h.send(8, run(true, 8))
			h.want("live", Event{Kind: EventStopped, Start: at(7)}, Event{Kind: EventRunning, Start: at(7), End: at(8)})
			if next == "running" {
				h.birth(10, run(true, 10))
				h.send(10, stored(run(false, 9)), stored(run(true, 9.5)))
				h.want("the next outage's history", Event{Kind: EventRunning, Start: at(9), End: at(9.5), Historical: true})
				return
			}
			h.birth(10, run(false, 10))
			h.send(10, stored(run(false, 9)))
			h.send(15, run(true, 15))
			h.want("the next outage's stop", Event{Kind: EventStopped, Start: at(10)}, Event{Kind: EventRunning, Start: at(9), End: at(15)})
		})
	}
}

// The BIRTH gives the stop code no value; the code stored with the stop
// (J, at 4) is the last known, and the PLC clears it with the run: the
// cleared code comes first, in a message of its own stamped with the run,
// the same "" the agent knew from before the outage or the first code it
// sees. The stop had J: the cleared code follows the stored one (before,
// it was taken for no change, or for a change from "", and the line got
// "" and the default loss). A code cleared before the run is the stop's
// reason at its end, as for any stop.
func TestSparkplugHistoricalStopIntoTheBirthCodeClearedWithTheRun(t *testing.T) {
	run, code, at, stored := spRun, spCode, spAt, spStored
	for _, c := range []struct {
		name    string
		before  bool    // the code known from before the outage ("")
		cleared float64 // when the code is cleared
		reason  string
	}{
		{"known before", true, 15, "J"},
		{"none before", false, 15, "J"},
		{"cleared before the run", true, 12, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newSPHist(t)
			if c.before {
				h.send(0, run(true, 0), code("", 0))
			} else {
				h.send(0, run(true, 0))
			}
			h.birth(10, run(false, 10))
			h.send(10, stored(code("J", 4)), stored(run(false, 4)))
			h.send(c.cleared, code("", c.cleared))
			h.send(15, run(true, 15))
			h.want("the stop", Event{Kind: EventStopped, Start: at(10)}, Event{Kind: EventRunning, Start: at(4), End: at(15), Reason: c.reason})
		})
	}
}
