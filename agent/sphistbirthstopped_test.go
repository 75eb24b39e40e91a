package agent_test

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// The press stops 60 minutes ago (code JAM), live; its edge node loses the
// broker; during the outage the press runs 50 minutes ago and stops again
// 47 minutes ago (code JAM), both stored, and it is still stopped at the
// BIRTH 40 minutes ago, which finds the stop on. The stored values come in
// two messages, plantedge restarting between them, and the press runs
// again 35 minutes ago, live: before the stored values came (after), or
// after. The lines are the truth: 60 to 50 and 47 to 35 minutes ago (before,
// one line from 60 to 35, 3 minutes too long). After the next reconnect the
// edge node sends the same history again: nothing more is booked.
//   - With min_stop 11m the 10-minute stop books no line, the 12-minute one
//     does; when the stop's line was booked whole at the run (after), it
//     stays, shortened (plantedge deletes no line).
//   - With block_workcenter the line the stop opened is closed at the stored
//     run and the BIRTH's stop opens one at the BIRTH; the stored part is a
//     line of its own (its start, before the BIRTH, cannot key the open
//     line). After the run, the closed line takes the stored end, and the
//     stored stop is a line of its own.
func TestSparkplugHistoricalRunEndsTheStopAStoppedBirthFound(t *testing.T) {
	const m = time.Minute
	truth := []spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 35 * m, "Equipment Failure"}, {20 * m, 10 * m, ""}}
	for _, tc := range []struct {
		name  string
		o     plantOptions
		after bool // the press runs again before the stored values come
		want  []spLine
	}{
		{"plain", plantOptions{}, false, truth},
		{"after", plantOptions{}, true, truth},
		{"min_stop", plantOptions{minStop: "11m"}, false, []spLine{{47 * m, 35 * m, "Equipment Failure"}}},
		{"min_stop after", plantOptions{minStop: "11m"}, true, []spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 35 * m, "Equipment Failure"}}},
		{"block_workcenter", plantOptions{block: true}, false,
			[]spLine{{60 * m, 50 * m, "Equipment Failure"}, {47 * m, 40 * m, "Equipment Failure"}, {40 * m, 35 * m, "Equipment Failure"}, {20 * m, 10 * m, ""}}},
		{"block_workcenter after", plantOptions{block: true}, true, truth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startSPHistory(t, tc.o)
			h.stoppedAt("JAM", 60*m)
			h.birth(1, false, "JAM", 40*m)
			history1 := []sptest.Metric{h.code("", 50*m, true), h.run(true, 50*m, true)}
			history2 := []sptest.Metric{h.code("JAM", 47*m, true), h.run(false, 47*m, true)}
			runs := func() {
				h.send("DDATA", 35*m, h.run(true, 35*m, false), h.code("", 35*m, false))
			}
			if tc.after {
				runs()
				waitFor(t, 20*time.Second, "the stop's line, to the run", func() (bool, string) {
					return h.hasLine(60*m, 35*m)
				})
			}
			h.send("DDATA", 40*m, history1...)
			if !tc.after && tc.o.block {
				waitFor(t, 20*time.Second, "the stop's line closed at the stored run, one open at the BIRTH", func() (bool, string) {
					ok, s := h.hasLine(60*m, 50*m)
					ok2, _ := h.hasLine(40*m, 0)
					return ok && ok2, s
				})
			}
			h.restart()
			h.send("DDATA", 40*m, history2...)
			if !tc.after {
				runs()
			}
			h.againAfterAnOutage(history1, history2)
			h.waitLines(tc.want)
		})
	}
}
