package agent_test

import (
	"strings"
	"testing"
	"time"
)

// The close record of a stop a BIRTH ended (to the BIRTH) and its stored end
// wait together for Odoo; Odoo then refuses the round's line for good
// (dead letter), and the dead letter is retried once the cause is gone: the
// close was acknowledged without a call (the later record of the line
// wins), so the stored end is dead-lettered as the line, not as late (as
// late, its retry found no line in Odoo, and the stop had none).
func TestStoredEndRefusedWithItsCloseIsRetriedAsTheLine(t *testing.T) {
	h := startSPHistory(t, plantOptions{})
	h.stoppedAt("JAM", 60*time.Minute)
	h.p.odoo.SetDown(true)
	h.birth(1, true, "", 40*time.Minute)
	h.send("DDATA", 40*time.Minute, h.code("", 50*time.Minute, true), h.run(true, 50*time.Minute, true))
	// The round's load, and the one-by-one retry, refused for good.
	h.refusedThenRetried(2, 20*time.Second)
	waitFor(t, 20*time.Second, "the stop's line, to its stored end, after the retry", func() (bool, string) {
		ls := h.lines()
		return len(ls) == 1 && ls[0].Start.Equal(h.now.Add(-60*time.Minute)) && ls[0].End.Equal(h.now.Add(-50*time.Minute)), h.show(ls)
	})
}

// A stop a BIRTH ended that min_stop left without a line (8 minutes): its
// stored end books nothing, and the log does not say its line takes it
// (it did).
func TestStoredEndOfAStopBelowMinStopIsNotLoggedAsBooked(t *testing.T) {
	h := startSPHistory(t, plantOptions{minStop: "15m"})
	h.stoppedAt("JAM", 60*time.Minute)
	h.birth(1, true, "", 52*time.Minute)
	h.send("DDATA", 52*time.Minute, h.code("", 55*time.Minute, true), h.run(true, 55*time.Minute, true))
	// A live stop of 20 minutes after it: its line says the stored run
	// was taken (in order).
	h.send("DDATA", 30*time.Minute, h.run(false, 30*time.Minute, false))
	h.send("DDATA", 10*time.Minute, h.run(true, 10*time.Minute, false))
	waitFor(t, 20*time.Second, "the live stop's line, alone", func() (bool, string) {
		ls := h.lines()
		return len(ls) == 1 && ls[0].Start.Equal(h.now.Add(-30*time.Minute)) && ls[0].End.Equal(h.now.Add(-10*time.Minute)), h.show(ls)
	})
	if strings.Contains(h.p.logs.String(), "its line takes that end") {
		t.Errorf("a stop that booked no line logged as taking its stored end")
	}
}
