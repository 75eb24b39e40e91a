package agent_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
	"github.com/plantedge/plantedge/odoo/odootest"
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
	type line struct {
		start, end time.Duration // before now
		loss       string        // "": not checked
	}
	full := []line{{60 * time.Minute, 50 * time.Minute, "Equipment Failure"}, {47 * time.Minute, 45 * time.Minute, ""}, {20 * time.Minute, 10 * time.Minute, ""}}
	for _, tc := range []struct {
		name string
		o    plantOptions
		down bool // Odoo down from before the BIRTH until the stored run is buffered
		want []line
	}{
		{"plain", plantOptions{}, false, full},
		{"odoo down", plantOptions{}, true, full},
		{"min_stop", plantOptions{minStop: "15m"}, false, []line{{60 * time.Minute, 50 * time.Minute, "Equipment Failure"}}},
		{"block_workcenter", plantOptions{block: true}, false, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sparkplugPlantWith(t, tc.o, true)
			ra := p.startAgentWith(false)
			defer func() { ra.stop() }()
			now := time.Now().Truncate(time.Second)
			ms := func(ago time.Duration) uint64 { return uint64(now.Add(-ago).UnixMilli()) }
			seq := 0
			send := func(typ string, ago time.Duration, metrics ...sptest.Metric) {
				p.spPublish(typ, sptest.Payload{Seq: seq, Timestamp: ms(ago), Metrics: metrics})
				seq++
			}
			run := func(v bool, ago time.Duration, stored bool) sptest.Metric {
				return sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, Value: v, Timestamp: ms(ago), Historical: stored}
			}
			code := func(v string, ago time.Duration, stored bool) sptest.Metric {
				return sptest.Metric{Name: "State/Code", Datatype: sptest.String, Value: v, Timestamp: ms(ago), Historical: stored}
			}
			birth := func(bd int64, running bool, reason string, ago time.Duration) {
				seq = 0
				send("NBIRTH", ago, sptest.Metric{Name: "bdSeq", Datatype: sptest.Int64, Value: bd})
				send("DBIRTH", ago,
					sptest.Metric{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1000), Timestamp: ms(ago)},
					sptest.Metric{Name: "State/Running", Alias: 2, HasAlias: true, Datatype: sptest.Boolean, Value: running, Timestamp: ms(ago)},
					sptest.Metric{Name: "State/Code", Alias: 3, HasAlias: true, Datatype: sptest.String, Value: reason, Timestamp: ms(ago)})
			}
			lines := func() []odootest.ProductivityLine {
				ls := p.odoo.Productivity()
				slices.SortFunc(ls, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
				return ls
			}
			show := func(ls []odootest.ProductivityLine) string {
				var b strings.Builder
				for _, l := range ls {
					end := "open"
					if !l.End.IsZero() {
						end = now.Sub(l.End).String()
					}
					fmt.Fprintf(&b, "[%v..%v %s] ", now.Sub(l.Start), end, l.LossName)
				}
				return b.String()
			}
			birth(0, true, "", 70*time.Minute)
			waitFor(t, 20*time.Second, "running", func() (bool, string) {
				m := ra.a.Status().Machines[0]
				return m.State == "running", m.State
			})
			send("DDATA", 60*time.Minute, code("JAM", 60*time.Minute, false), run(false, 60*time.Minute, false))
			waitFor(t, 20*time.Second, "stopped", func() (bool, string) {
				m := ra.a.Status().Machines[0]
				return m.State == "stopped", m.State
			})
			if tc.down {
				p.odoo.SetDown(true)
			}
			birth(1, true, "", 40*time.Minute)
			history1 := []sptest.Metric{code("", 50*time.Minute, true), run(true, 50*time.Minute, true)}
			history2 := []sptest.Metric{run(false, 47*time.Minute, true), run(true, 45*time.Minute, true)}
			if tc.name == "plain" {
				waitFor(t, 20*time.Second, "the stop's line booked to the BIRTH", func() (bool, string) {
					ls := lines()
					return slices.ContainsFunc(ls, func(l odootest.ProductivityLine) bool {
						return l.Start.Equal(now.Add(-60*time.Minute)) && l.End.Equal(now.Add(-40*time.Minute))
					}), show(ls)
				})
			}
			send("DDATA", 40*time.Minute, history1...)
			if tc.down {
				waitFor(t, 20*time.Second, "the stop's end and the stored one buffered", func() (bool, string) {
					n := ra.a.Status().Buffer.Pending
					return n >= 2, fmt.Sprint(n)
				})
				p.odoo.SetDown(false)
			}
			waitFor(t, 20*time.Second, "the stop's line to end at the stored run", func() (bool, string) {
				ls := lines()
				return slices.ContainsFunc(ls, func(l odootest.ProductivityLine) bool {
					return l.Start.Equal(now.Add(-60*time.Minute)) && l.End.Equal(now.Add(-50*time.Minute))
				}), show(ls)
			})
			ra.stop()
			ra = p.startAgentWith(false)
			send("DDATA", 40*time.Minute, history2...)
			// Back after another outage, running: the same history again,
			// then a live stop of 10 minutes.
			birth(2, true, "", 30*time.Minute)
			send("DDATA", 30*time.Minute, history1...)
			send("DDATA", 30*time.Minute, history2...)
			send("DDATA", 20*time.Minute, run(false, 20*time.Minute, false))
			send("DDATA", 10*time.Minute, run(true, 10*time.Minute, false))
			match := func(ls []odootest.ProductivityLine) bool {
				if len(ls) != len(tc.want) {
					return false
				}
				for i, w := range tc.want {
					if !ls[i].Start.Equal(now.Add(-w.start)) || !ls[i].End.Equal(now.Add(-w.end)) || w.loss != "" && ls[i].LossName != w.loss {
						return false
					}
				}
				return true
			}
			waitFor(t, 20*time.Second, "the downtime lines", func() (bool, string) {
				ls := lines()
				return match(ls), show(ls)
			})
			time.Sleep(time.Second) // nothing more comes
			if ls := lines(); !match(ls) {
				t.Fatalf("downtime lines %s", show(ls))
			}
		})
	}
}
