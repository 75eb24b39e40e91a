package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// The press stops 60 minutes ago (code JAM), live; its edge node loses the
// broker; during the outage the press runs 50 minutes ago (stored), stops
// from 47 to 45 minutes ago (stored), and runs at the BIRTH 40 minutes
// ago, which ends the stop. The stored values come after the BIRTH in two
// messages, plantedge restarting between them: the stop's line ends at the
// stored run, 50 minutes ago (before, at the BIRTH: 10 minutes too long,
// and the stored stop from 47 to 45 was taken as within it), and the stored
// stop is a line of its own. After the next reconnect the edge node sends
// the same history again: nothing more is booked; a live stop from 20 to 10
// minutes ago follows. With min_stop 15m the stop's line was booked at the
// BIRTH (20 minutes) and stays, shortened to 10 (the shorter stops book
// none); with block_workcenter the line the stop opened is closed at the
// BIRTH and then takes the stored end. The line's end is corrected when
// Odoo has the line booked to the BIRTH already (plain), and when the two
// wait together for Odoo (odoo down: the round books the later).
func TestSparkplugHistoricalRunEndsTheBirthsStop(t *testing.T) {
	full := []spLine{{60 * time.Minute, 50 * time.Minute, "Equipment Failure"}, {47 * time.Minute, 45 * time.Minute, ""}, {20 * time.Minute, 10 * time.Minute, ""}}
	for _, tc := range []struct {
		name string
		o    plantOptions
		down bool // Odoo down from before the BIRTH until the stored run is buffered
		want []spLine
	}{
		{"plain", plantOptions{}, false, full},
		{"odoo down", plantOptions{}, true, full},
		{"min_stop", plantOptions{minStop: "15m"}, false, []spLine{{60 * time.Minute, 50 * time.Minute, "Equipment Failure"}}},
		{"block_workcenter", plantOptions{block: true}, false, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startSPHistory(t, tc.o)
			h.stoppedAt("JAM", 60*time.Minute)
			if tc.down {
				h.p.odoo.SetDown(true)
			}
			h.birth(1, true, "", 40*time.Minute)
			history1 := []sptest.Metric{h.code("", 50*time.Minute, true), h.run(true, 50*time.Minute, true)}
			history2 := []sptest.Metric{h.run(false, 47*time.Minute, true), h.run(true, 45*time.Minute, true)}
			if tc.name == "plain" {
				waitFor(t, 20*time.Second, "the stop's line booked to the BIRTH", func() (bool, string) {
					return h.hasLine(60*time.Minute, 40*time.Minute)
				})
			}
			h.send("DDATA", 40*time.Minute, history1...)
			if tc.down {
				waitFor(t, 20*time.Second, "the stop's end and the stored one buffered", func() (bool, string) {
					n := h.ra.a.Status().Buffer.Pending
					return n >= 2, fmt.Sprint(n)
				})
				h.p.odoo.SetDown(false)
			}
			waitFor(t, 20*time.Second, "the stop's line to end at the stored run", func() (bool, string) {
				return h.hasLine(60*time.Minute, 50*time.Minute)
			})
			h.restart()
			h.send("DDATA", 40*time.Minute, history2...)
			h.againAfterAnOutage(history1, history2)
			h.waitLines(tc.want)
		})
	}
}
