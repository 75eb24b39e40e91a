package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/internal/sptest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// The close record of a stop a BIRTH ended (to the BIRTH) and its stored end
// wait together for Odoo; Odoo then refuses the round's line for good
// (dead letter), and the dead letter is retried once the cause is gone: the
// close was acknowledged without a call (the later record of the line
// wins), so the stored end is dead-lettered as the line, not as late (as
// late, its retry found no line in Odoo, and the stop had none).
func TestStoredEndRefusedWithItsCloseIsRetriedAsTheLine(t *testing.T) {
	p := sparkplugPlantWith(t, plantOptions{}, true)
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
	send("DDATA", 60*time.Minute, code("JAM", 60*time.Minute, false), run(false, 60*time.Minute, false))
	waitFor(t, 20*time.Second, "stopped", func() (bool, string) {
		m := ra.a.Status().Machines[0]
		return m.State == "stopped", m.State
	})
	p.odoo.SetDown(true)
	birth(1, true, "", 40*time.Minute)
	send("DDATA", 40*time.Minute, code("", 50*time.Minute, true), run(true, 50*time.Minute, true))
	waitFor(t, 20*time.Second, "the stop's end and the stored one buffered", func() (bool, string) {
		n := ra.a.Status().Buffer.Pending
		return n >= 2, fmt.Sprint(n)
	})
	// The round's load, and the one-by-one retry, refused for good.
	p.odoo.RefuseNext("mrp.workcenter.productivity", "load", 2, "odoo.exceptions.ValidationError", "refused for the test")
	p.odoo.SetDown(false)
	waitFor(t, 20*time.Second, "a dead letter", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.DeadLetters >= 1 && st.Buffer.Pending == 0, fmt.Sprintf("dead %d pending %d", st.Buffer.DeadLetters, st.Buffer.Pending)
	})
	t.Logf("dead letters after the refusal: %d; lines %s", ra.a.Status().Buffer.DeadLetters, show(lines()))
	api := agent.NewAPIClient(p.listen)
	res, err := api.DeadLetterAction(context.Background(), "retry", "all", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("retried %d", res.Affected)
	waitFor(t, 20*time.Second, "the stop's line, to its stored end, after the retry", func() (bool, string) {
		ls := lines()
		return len(ls) == 1 && ls[0].Start.Equal(now.Add(-60*time.Minute)) && ls[0].End.Equal(now.Add(-50*time.Minute)), show(ls)
	})
}

// A stop a BIRTH ended that min_stop left without a line (8 minutes): its
// stored end books nothing, and the log does not say its line takes it
// (it did).
func TestStoredEndOfAStopBelowMinStopIsNotLoggedAsBooked(t *testing.T) {
	p := sparkplugPlantWith(t, plantOptions{minStop: "15m"}, true)
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
	send("DDATA", 60*time.Minute, code("JAM", 60*time.Minute, false), run(false, 60*time.Minute, false))
	waitFor(t, 20*time.Second, "stopped", func() (bool, string) {
		m := ra.a.Status().Machines[0]
		return m.State == "stopped", m.State
	})
	birth(1, true, "", 52*time.Minute)
	send("DDATA", 52*time.Minute, code("", 55*time.Minute, true), run(true, 55*time.Minute, true))
	// A live stop of 20 minutes after it: its line says the stored run
	// was taken (in order).
	send("DDATA", 30*time.Minute, run(false, 30*time.Minute, false))
	send("DDATA", 10*time.Minute, run(true, 10*time.Minute, false))
	waitFor(t, 20*time.Second, "the live stop's line, alone", func() (bool, string) {
		ls := lines()
		return len(ls) == 1 && ls[0].Start.Equal(now.Add(-30*time.Minute)) && ls[0].End.Equal(now.Add(-10*time.Minute)), show(ls)
	})
	if strings.Contains(p.logs.String(), "its line takes that end") {
		t.Errorf("a stop that booked no line logged as taking its stored end")
	}
}
