package agent_test

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// The records of a stop a BIRTH found on and split at its stored run (the
// line to the stored run, marked Stored, and the stop begun at the BIRTH,
// going on from the stored stop) wait for Odoo, which then refuses the
// round for good: dead letters. Retried once the cause is gone, the lines
// are the truth: 60 to 50 and 47 to 35 minutes ago
// (block_workcenter: 47 to 40 and 40 to 35).
func TestSparkplugHistoricalSplitRefusedIsRetriedFromTheDeadLetters(t *testing.T) {
	const m = time.Minute
	for _, tc := range []struct {
		name string
		o    plantOptions
		want []spLine
	}{
		{"plain", plantOptions{}, []spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 35 * m, "Equipment Failure"}}},
		// (The stored part before the BIRTH is a line of its own: the open
		// line is keyed by the BIRTH.)
		{"block_workcenter", plantOptions{block: true}, []spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 40 * m, "Equipment Failure"}, {40 * m, 35 * m, "Equipment Failure"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startSPHistory(t, tc.o)
			h.stoppedAt("JAM", 60*m)
			h.p.odoo.SetDown(true)
			h.birth(1, false, "JAM", 40*m)
			h.send("DDATA", 40*m, []sptest.Metric{h.code("", 50*m, true), h.run(true, 50*m, true)}...)
			h.send("DDATA", 40*m, []sptest.Metric{h.code("JAM", 47*m, true), h.run(false, 47*m, true)}...)
			h.send("DDATA", 35*m, h.run(true, 35*m, false), h.code("", 35*m, false))
			h.refusedThenRetried(2, 30*time.Second)
			h.waitLines(tc.want)
		})
	}
}
