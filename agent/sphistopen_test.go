package agent_test

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// The press runs; its edge node loses the broker; during the outage the
// press stops once (stored: 65 to 55 minutes ago) and stops again 50
// minutes ago with code JAM, and is still stopped at the BIRTH 40 minutes
// ago. The stored values come after the BIRTH in two messages, plantedge
// restarting between them; the press runs again 35 minutes ago. The stop
// from 50 minutes ago is booked once, whole: with min_stop 8m one line from
// 50 to 35 minutes ago (before, only the 5 minutes from the BIRTH, below
// min_stop: nothing); with block_workcenter the line the BIRTH's stop opened
// stays as it is (its start keys it), and the stored part is a line of its
// own. After the next reconnect the edge node sends the same history
// again: nothing more is booked.
func TestSparkplugHistoricalStopRunsIntoTheBirth(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    plantOptions
		want []spLine
	}{
		{"min_stop", plantOptions{minStop: "8m"}, []spLine{{65 * time.Minute, 55 * time.Minute, ""}, {50 * time.Minute, 35 * time.Minute, "Equipment Failure"}, {20 * time.Minute, 10 * time.Minute, ""}}},
		{"block_workcenter", plantOptions{block: true}, []spLine{{65 * time.Minute, 55 * time.Minute, ""}, {50 * time.Minute, 40 * time.Minute, "Equipment Failure"}, {40 * time.Minute, 35 * time.Minute, "Equipment Failure"}, {20 * time.Minute, 10 * time.Minute, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startSPHistory(t, tc.o)
			h.birth(1, false, "JAM", 40*time.Minute)
			history1 := []sptest.Metric{h.run(false, 65*time.Minute, true), h.run(true, 55*time.Minute, true)}
			history2 := []sptest.Metric{h.code("JAM", 50*time.Minute, true), h.run(false, 50*time.Minute, true)}
			h.send("DDATA", 40*time.Minute, history1...)
			waitFor(t, 20*time.Second, "the stored stop's line", func() (bool, string) {
				return h.hasLine(65*time.Minute, 0)
			})
			h.restart()
			h.send("DDATA", 40*time.Minute, history2...)
			h.send("DDATA", 35*time.Minute, h.run(true, 35*time.Minute, false), h.code("", 35*time.Minute, false))
			h.againAfterAnOutage(history1, history2)
			h.waitLines(tc.want)
		})
	}
}
