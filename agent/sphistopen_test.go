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
	type line struct {
		start, end time.Duration // before now
		loss       string        // "": not checked
	}
	for _, tc := range []struct {
		name string
		o    plantOptions
		want []line
	}{
		{"min_stop", plantOptions{minStop: "8m"}, []line{{65 * time.Minute, 55 * time.Minute, ""}, {50 * time.Minute, 35 * time.Minute, "Equipment Failure"}, {20 * time.Minute, 10 * time.Minute, ""}}},
		{"block_workcenter", plantOptions{block: true}, []line{{65 * time.Minute, 55 * time.Minute, ""}, {50 * time.Minute, 40 * time.Minute, "Equipment Failure"}, {40 * time.Minute, 35 * time.Minute, "Equipment Failure"}, {20 * time.Minute, 10 * time.Minute, ""}}},
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
					fmt.Fprintf(&b, "[%v..%v %s] ", now.Sub(l.Start), now.Sub(l.End), l.LossName)
				}
				return b.String()
			}
			birth(0, true, "", 70*time.Minute)
			waitFor(t, 20*time.Second, "running", func() (bool, string) {
				m := ra.a.Status().Machines[0]
				return m.State == "running", m.State
			})
			birth(1, false, "JAM", 40*time.Minute)
			history1 := []sptest.Metric{run(false, 65*time.Minute, true), run(true, 55*time.Minute, true)}
			history2 := []sptest.Metric{code("JAM", 50*time.Minute, true), run(false, 50*time.Minute, true)}
			send("DDATA", 40*time.Minute, history1...)
			waitFor(t, 20*time.Second, "the stored stop's line", func() (bool, string) {
				ls := lines()
				return slices.ContainsFunc(ls, func(l odootest.ProductivityLine) bool { return l.Start.Equal(now.Add(-65 * time.Minute)) }), show(ls)
			})
			ra.stop()
			ra = p.startAgentWith(false)
			send("DDATA", 40*time.Minute, history2...)
			send("DDATA", 35*time.Minute, run(true, 35*time.Minute, false), code("", 35*time.Minute, false))
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
