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

// spHistory plays a Sparkplug edge node that stores and forwards, for a
// plant of sparkplugPlantWith: BIRTHs and live or stored (is_historical)
// values, each at a time before now (now to the second: Odoo keeps
// seconds).
type spHistory struct {
	t   *testing.T
	p   *plant
	ra  *runningAgent // stopped at the test's end
	now time.Time
	seq int
}

// spLine is a downtime line expected in Odoo, its ends before now; a loss
// of "" is not checked.
type spLine struct {
	start, end time.Duration
	loss       string
}

// startSPHistory starts a Sparkplug plant with options o and its agent,
// and sends the first BIRTH, the machine running 70 minutes ago.
func startSPHistory(t *testing.T, o plantOptions) *spHistory {
	p := sparkplugPlantWith(t, o, true)
	h := &spHistory{t: t, p: p, ra: p.startAgentWith(false), now: time.Now().Truncate(time.Second)}
	t.Cleanup(func() { h.ra.stop() })
	h.birth(0, true, "", 70*time.Minute)
	h.waitState("running")
	return h
}

// restart stops the agent and starts it again.
func (h *spHistory) restart() {
	h.ra.stop()
	h.ra = h.p.startAgentWith(false)
}

func (h *spHistory) waitState(want string) {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, want, func() (bool, string) {
		m := h.ra.a.Status().Machines[0]
		return m.State == want, m.State
	})
}

func (h *spHistory) ms(ago time.Duration) uint64 { return uint64(h.now.Add(-ago).UnixMilli()) }

func (h *spHistory) send(typ string, ago time.Duration, metrics ...sptest.Metric) {
	h.p.spPublish(typ, sptest.Payload{Seq: h.seq, Timestamp: h.ms(ago), Metrics: metrics})
	h.seq++
}

func (h *spHistory) run(v bool, ago time.Duration, stored bool) sptest.Metric {
	return sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, Value: v, Timestamp: h.ms(ago), Historical: stored}
}

func (h *spHistory) code(v string, ago time.Duration, stored bool) sptest.Metric {
	return sptest.Metric{Name: "State/Code", Datatype: sptest.String, Value: v, Timestamp: h.ms(ago), Historical: stored}
}

// birth sends the edge node's NBIRTH (bdSeq bd) and its device's DBIRTH.
func (h *spHistory) birth(bd int64, running bool, reason string, ago time.Duration) {
	h.seq = 0
	h.send("NBIRTH", ago, sptest.Metric{Name: "bdSeq", Datatype: sptest.Int64, Value: bd})
	h.send("DBIRTH", ago,
		sptest.Metric{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1000), Timestamp: h.ms(ago)},
		sptest.Metric{Name: "State/Running", Alias: 2, HasAlias: true, Datatype: sptest.Boolean, Value: running, Timestamp: h.ms(ago)},
		sptest.Metric{Name: "State/Code", Alias: 3, HasAlias: true, Datatype: sptest.String, Value: reason, Timestamp: h.ms(ago)})
}

// stoppedAt sends a live stop with reason code ago, and waits for the
// agent to see it.
func (h *spHistory) stoppedAt(code string, ago time.Duration) {
	h.t.Helper()
	h.send("DDATA", ago, h.code(code, ago, false), h.run(false, ago, false))
	h.waitState("stopped")
}

// againAfterAnOutage is the edge node back after another outage (a BIRTH
// 30 minutes ago, running) sending the same histories again, then a live
// stop from 20 to 10 minutes ago.
func (h *spHistory) againAfterAnOutage(histories ...[]sptest.Metric) {
	h.birth(2, true, "", 30*time.Minute)
	for _, hist := range histories {
		h.send("DDATA", 30*time.Minute, hist...)
	}
	h.send("DDATA", 20*time.Minute, h.run(false, 20*time.Minute, false))
	h.send("DDATA", 10*time.Minute, h.run(true, 10*time.Minute, false))
}

// lines is Odoo's downtime lines, the earliest first.
func (h *spHistory) lines() []odootest.ProductivityLine {
	ls := h.p.odoo.Productivity()
	slices.SortFunc(ls, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
	return ls
}

func (h *spHistory) show(ls []odootest.ProductivityLine) string {
	var b strings.Builder
	for _, l := range ls {
		end := "open"
		if !l.End.IsZero() {
			end = h.now.Sub(l.End).String()
		}
		fmt.Fprintf(&b, "[%v..%v %s] ", h.now.Sub(l.Start), end, l.LossName)
	}
	return b.String()
}

// hasLine reports whether Odoo has a line from start to end before now
// (end 0: any end).
func (h *spHistory) hasLine(start, end time.Duration) (bool, string) {
	ls := h.lines()
	return slices.ContainsFunc(ls, func(l odootest.ProductivityLine) bool {
		return l.Start.Equal(h.now.Add(-start)) && (end == 0 || l.End.Equal(h.now.Add(-end)))
	}), h.show(ls)
}

// waitLines waits for Odoo's lines to be want, and checks once two rounds
// begun after have ended that nothing more came.
func (h *spHistory) waitLines(want []spLine) {
	h.t.Helper()
	match := func(ls []odootest.ProductivityLine) bool {
		if len(ls) != len(want) {
			return false
		}
		for i, w := range want {
			if !ls[i].Start.Equal(h.now.Add(-w.start)) || !ls[i].End.Equal(h.now.Add(-w.end)) || w.loss != "" && ls[i].LossName != w.loss {
				return false
			}
		}
		return true
	}
	waitFor(h.t, 20*time.Second, "the downtime lines", func() (bool, string) {
		ls := h.lines()
		return match(ls), h.show(ls)
	})
	h.p.waitRoundsPass(h.ra, 2, "after the lines") // nothing more comes
	if ls := h.lines(); !match(ls) {
		h.t.Fatalf("downtime lines %s", h.show(ls))
	}
}

// refusedThenRetried waits for the records buffered while Odoo is down (at
// least n), has Odoo refuse the round's load and its one-by-one retry for
// good as it comes back, waits for them in the dead letters with nothing
// pending (within dead), and retries them all.
func (h *spHistory) refusedThenRetried(n int, dead time.Duration) {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, "the records buffered", func() (bool, string) {
		got := h.ra.a.Status().Buffer.Pending
		return got >= n, fmt.Sprint(got)
	})
	h.p.odoo.RefuseNext("mrp.workcenter.productivity", "load", 2, "odoo.exceptions.ValidationError", "refused for the test")
	h.p.odoo.SetDown(false)
	waitFor(h.t, dead, "dead letters", func() (bool, string) {
		st := h.ra.a.Status()
		return st.Buffer.DeadLetters >= 1 && st.Buffer.Pending == 0, fmt.Sprintf("dead %d pending %d", st.Buffer.DeadLetters, st.Buffer.Pending)
	})
	h.t.Logf("dead letters after the refusal: %d; lines %s", h.ra.a.Status().Buffer.DeadLetters, h.show(h.lines()))
	res, err := agent.NewAPIClient(h.p.listen).DeadLetterAction(context.Background(), "retry", "all", false)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Logf("retried %d", res.Affected)
}
