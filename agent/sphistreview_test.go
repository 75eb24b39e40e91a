package agent_test

import (
	"testing"
	"time"
)

// The press, running 70 minutes ago, stops 66 minutes ago while its edge
// node is away (stored); the BIRTH 60 minutes ago says stopped, and the
// stored stop comes. The node loses the broker again before the rest of
// that history; the press runs 50 minutes ago (stored) and the BIRTH 40
// minutes ago says running: its line 66 to 40. The rest of the first
// outage's history (run 64, stop 63, run 62, stop 61), then the second's
// (the run 50 minutes ago) come after, plantedge restarting between them.
// The lines are the truth: 66..64, 63..62, 61..50. Before, the second
// outage's stored run ended the first line again, at 50 minutes ago: a line
// 66..50 over the line 63..62 (that minute booked twice).
func TestSparkplugHistoricalLaterOutagesRunDoesNotEndACorrectedLineAgain(t *testing.T) {
	const m = time.Minute
	h := startSPHistory(t, plantOptions{})
	h.birth(1, false, "", 60*m)
	h.waitState("stopped")
	h.send("DDATA", 60*m, h.run(false, 66*m, true))
	h.birth(2, true, "", 40*m)
	waitFor(t, 20*time.Second, "the stop's line, to the BIRTH", func() (bool, string) {
		return h.hasLine(66*m, 40*m)
	})
	h.send("DDATA", 40*m, h.run(true, 64*m, true), h.run(false, 63*m, true), h.run(true, 62*m, true), h.run(false, 61*m, true))
	waitFor(t, 20*time.Second, "the stored run's end", func() (bool, string) {
		return h.hasLine(66*m, 64*m)
	})
	h.restart()
	h.send("DDATA", 40*m, h.run(true, 50*m, true))
	h.waitLines([]spLine{{66 * m, 64 * m, ""}, {63 * m, 62 * m, ""}, {61 * m, 50 * m, ""}})
}

// The press stops 60 minutes ago (live); its edge node loses the broker;
// the press runs 50 minutes ago and stops 47 minutes ago (stored), and the
// BIRTH 40 minutes ago finds it stopped. The stored run comes, then the
// live run 35 minutes ago, then (plantedge restarted) the stored stop: the
// lines are 60..50, 47..40 (the stored part, a line of its own) and 40..35
// (the stop begun at the BIRTH, booked at its live end). Before, 47..40
// was lost.
func TestSparkplugHistoricalStoredStopAfterASplitStopEndedLive(t *testing.T) {
	const m = time.Minute
	h := startSPHistory(t, plantOptions{})
	h.stoppedAt("JAM", 60*m)
	h.birth(1, false, "JAM", 40*m)
	h.send("DDATA", 40*m, h.code("", 50*m, true), h.run(true, 50*m, true))
	waitFor(t, 20*time.Second, "the stop's line, to the stored run", func() (bool, string) {
		return h.hasLine(60*m, 50*m)
	})
	h.send("DDATA", 35*m, h.run(true, 35*m, false), h.code("", 35*m, false))
	waitFor(t, 20*time.Second, "the BIRTH's stop's line", func() (bool, string) {
		return h.hasLine(40*m, 35*m)
	})
	h.restart()
	h.send("DDATA", 35*m, h.code("JAM", 47*m, true), h.run(false, 47*m, true))
	h.waitLines([]spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 40 * m, "Equipment Failure"}, {40 * m, 35 * m, "Equipment Failure"}})
}
