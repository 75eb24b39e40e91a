package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// A machine on node-opcua stops and runs again while the link to the PLC
// is cut (shorter than the subscription's lifetime), making pieces: the
// source takes those changes, at reconnect, from the subscription of the
// session the cut left (connectors/opcua drainOrphan), and they reach the
// agent after the link is back, just before the new session's first
// values, with source times inside the outage. The agent books the stop
// as one downtime line from the stop's source time to the run's, the
// pieces exactly, nothing twice.
func TestEndToEndStopAndRunHiddenByALinkLossAreBooked(t *testing.T) {
	t.Parallel()
	bookStopAndRunHiddenByALoss(t, uaLinkCrash)
}

// The same through a link that goes silent (a cable pulled, a switch
// dead: no RST, no FIN), which the agent finds only by its heartbeat
// (heartbeat_timeout: the plant sets none, the agent's default, 10 s),
// silent uaSilence: the stop and the run are made after the agent found
// the loss. The subscription of the session left lives as long as that
// session (2 minutes) and keeps them. Before, it was asked a lifetime of
// heartbeat_timeout (three keep-alive periods): the server deleted it,
// with the stop and the run its monitored items had queued, before the
// link came back, and Odoo got the pieces (the new session's first read)
// but no downtime line.
func TestEndToEndStopAndRunHiddenByASilentLinkLossAreBooked(t *testing.T) {
	t.Parallel()
	bookStopAndRunHiddenByALoss(t, uaLinkSilent(uaSilence))
}

// uaSilence is how long the silent link of
// TestEndToEndStopAndRunHiddenByASilentLinkLossAreBooked stays silent:
// two and a half times the plant's heartbeat_timeout (10 s), and the
// lifetime the subscription was asked before (heartbeat_timeout), well
// within the session's (2 minutes).
const uaSilence = 25 * time.Second

// bookStopAndRunHiddenByALoss makes a stop and a run, with pieces, while
// the link to the PLC is lost (loss), and checks what Odoo ends with: the
// quantity exactly, one downtime line from the stop's source time to the
// run's; the machine running, the changes counted as recovered.
func bookStopAndRunHiddenByALoss(t *testing.T, loss uaLinkLoss) {
	t.Helper()
	p, ra, m, n := uaCutPlant(t, false, loss)
	n.produce(5)
	p.waitExact(ra, 30*time.Second)

	n.cut()
	stopAt, runAt := n.stopAndRun(3, 2)
	n.back()

	p.waitExact(ra, 60*time.Second)
	p.waitRoundsPass(ra, 3, "after the lines came")
	n.wantLines(stopAt, runAt)
	if got, want := p.qty(m.id), m.made(); got != want {
		t.Errorf("qty %v, want %v", got, want)
	}
	for _, s := range ra.a.Status().Machines {
		if s.ID == m.id && s.State != "running" {
			t.Errorf("machine state %q after the link came back, want running", s.State)
		}
	}
	// Counted for monitoring: the run and the stop at least (the
	// counter's changes too, unless a value sent as the link went came
	// live).
	if v, ok := metric(p.metrics(), "plantedge_source_recovered_changes_total", `source="line1"`); !ok || v < 2 {
		t.Errorf("plantedge_source_recovered_changes_total %v (present %v), want at least the stop and the run", v, ok)
	}
}

// The machine stops while the link is cut and is still stopped when it
// comes back: with block_workcenter, one open line from the stop's source
// time at once, closed at the run's when it runs.
func TestEndToEndStopHiddenByALinkLossOpensItsLine(t *testing.T) {
	t.Parallel()
	p, ra, m, n := uaCutPlant(t, true, uaLinkCrash)
	n.produce(5)
	p.waitExact(ra, 30*time.Second)

	n.cut()
	n.produce(2)
	n.pause()
	stopAt := n.set(n.running, 0)
	n.back()

	waitFor(t, 30*time.Second, "one open downtime line", func() (bool, string) {
		ls := p.odoo.Productivity()
		return len(ls) == 1 && ls[0].End.IsZero(), fmt.Sprintf("%+v", ls)
	})
	if l := p.odoo.Productivity()[0]; !l.Start.Equal(stopAt.Truncate(time.Second)) {
		t.Errorf("the open line starts at %s, want the stop's source time %s", l.Start, stopAt)
	}
	for _, s := range ra.a.Status().Machines {
		if s.ID == m.id && s.State != "stopped" {
			t.Errorf("machine state %q (last known %q), want stopped", s.State, s.LastKnownState)
		}
	}
	runAt := n.set(n.running, 1)
	n.produce(1)
	m.mu.Lock()
	m.stops++
	m.mu.Unlock()
	p.waitExact(ra, 30*time.Second)
	p.waitRoundsPass(ra, 3, "after the line closed")
	n.wantLines(stopAt, runAt)
}

// The agent is killed (SIGKILL: the OOM killer, a power cut; systemd
// starts it again) and the machine stops and runs again, making pieces,
// before the next run has connected: that run took the session the killed
// one left on node-opcua only to close it, and its first read brought the
// run the machine was in — the stop was lost. It now takes the changes
// from that session's subscription first (connectors/opcua drainOrphan),
// and the agent books the stop as one line from the stop's source time to
// the run's. The answers the killed run was sent before the kill stay
// offered for Republish (all of them here: the server takes no
// acknowledgement), and they hold the stops and runs the killed run had
// booked: had again, they are dropped by the source times the agent has
// (a stop and run older than the run state, taken for a clock set back,
// ended the first stop a second time; a counter value from before the
// last two resets, above the last value, booked its pieces again), and
// Odoo ends with the three lines and the pieces exactly.
func TestEndToEndStopAndRunWhileTheAgentWasKilledAreBooked(t *testing.T) {
	t.Parallel()
	p, m, n := uaPlant(t, false, uaLinkCrash, "NO_ACKS=1")
	child := agenttest.StartChild(t, p.cfgPath)
	killed := false
	defer func() {
		if !killed {
			_ = child.Process.Kill()
			_, _ = child.Process.Wait()
		}
	}()
	api := agent.NewAPIClient(p.listen)
	waitFor(t, 60*time.Second, "the machine running", func() (bool, string) {
		st, err := api.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Machines {
			if s.ID == m.id {
				return s.State == "running", s.State
			}
		}
		return false, "no machine"
	})
	// Two stops and runs the killed run books.
	var want [][2]time.Time
	for range 2 {
		n.produce(5)
		n.pause()
		stopAt, runAt := n.stopAndRun(2, 0)
		want = append(want, [2]time.Time{stopAt, runAt})
	}
	// The counter reset twice (a shift change): an older value sent again
	// rises above the last one, from before the reset before last.
	for _, k := range []int64{3, 2} {
		m.mu.Lock()
		m.start -= m.good
		m.good = 0
		m.mu.Unlock()
		n.set(n.good, 0)
		n.pause()
		n.produce(k)
		n.pause()
	}
	p.waitExact(nil, 60*time.Second)
	_ = child.Process.Signal(syscall.SIGKILL)
	_, _ = child.Process.Wait()
	killed = true

	// While no agent runs.
	n.pause()
	stopAt, runAt := n.stopAndRun(3, 2)

	ra := p.startAgentWith(false)
	p.waitExact(ra, 60*time.Second)
	p.waitRoundsPass(ra, 3, "after the lines came")
	ls := p.odoo.Productivity()
	slices.SortFunc(ls, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
	want = append(want, [2]time.Time{stopAt, runAt})
	ok := len(ls) == len(want)
	for i := 0; ok && i < len(ls); i++ {
		ok = ls[i].Start.Equal(want[i][0].Truncate(time.Second)) && ls[i].End.Equal(want[i][1].Truncate(time.Second))
	}
	if !ok {
		t.Errorf("downtime lines %+v, want %v", ls, want)
	}
	if got, want := p.qty(m.id), m.made(); got != want {
		t.Errorf("qty %v, want %v", got, want)
	}
}

// uaCutPlant is a plant whose machine ua-1's running signal (L0.M0.T0) and
// good counter (L0.M0.T1) are Double nodes of node-opcua, reached through a
// link that loss can lose; the agent runs, with its baselines.
func uaCutPlant(t *testing.T, block bool, loss uaLinkLoss) (*plant, *runningAgent, *simMachine, *uaCutNodes) {
	t.Helper()
	p, m, n := uaPlant(t, block, loss)
	ra := p.startAgentWith(false)
	n.ra = ra
	waitFor(t, 30*time.Second, "the machine running", func() (bool, string) {
		for _, s := range ra.a.Status().Machines {
			if s.ID == m.id {
				return s.State == "running", s.State
			}
		}
		return false, "no machine"
	})
	return p, ra, m, n
}

// uaLinkLoss is a way uaCutPlant's link to node-opcua is lost (as the
// connector's drain tests lose theirs): it starts what carries the
// agent's connections to target (host:port) and returns its host:port,
// lose, which loses the link, and back, which brings it back.
type uaLinkLoss func(t *testing.T, target string) (addr string, lose, back func())

// uaLinkCrash resets the link's connections and refuses new ones until it
// is back: the agent sees the loss at once.
func uaLinkCrash(t *testing.T, target string) (string, func(), func()) {
	px := nettest.NewCrashProxy(t, target)
	return px.Addr(), px.Crash, px.Restart
}

// uaLinkSilent makes the link silent for silence from lose: what either
// side sends goes nowhere, every connection stays open (the agent finds
// the loss by its heartbeat). Back, the connections open then are closed
// (what they held lost) and new ones go through.
func uaLinkSilent(silence time.Duration) uaLinkLoss {
	return func(t *testing.T, target string) (string, func(), func()) {
		return nettest.SilentLink(t, target, silence)
	}
}

// uaPlant is uaCutPlant before the agent starts; env is the node-opcua
// server's (see its server.js).
func uaPlant(t *testing.T, block bool, loss uaLinkLoss, env ...string) (*plant, *simMachine, *uaCutNodes) {
	t.Helper()
	endpoint := startNodeOPCUA(t, append([]string{"NO_SECURITY=1", "PLANT=1,1,2"}, env...)...)
	p := newPlant(t, plantOptions{machines: []string{"ua-1"}, block: block})
	m := p.machines[0]
	addr, lose, back := loss(t, strings.TrimPrefix(endpoint, "opc.tcp://"))
	n := &uaCutNodes{t: t, p: p, m: m, lose: lose, restore: back, w: opcuatest.NewWriter(t, endpoint),
		running: "L0.M0.T0", good: "L0.M0.T1"}
	n.set(n.running, 1)
	n.set(n.good, float64(m.goodNow()))
	p.editConfig(fmt.Sprintf("    endpoint: %q\n", p.ua.Endpoint()), fmt.Sprintf("    endpoint: %q\n", "opc.tcp://"+addr))
	p.editConfig(fmt.Sprintf("node: %q", p.ua.NodeID("ua-1.Good")), `node: "nsu=urn:plantedge:test;s=L0.M0.T1"`)
	p.editConfig(fmt.Sprintf("node: %q", p.ua.NodeID("ua-1.Running")), `node: "nsu=urn:plantedge:test;s=L0.M0.T0"`)
	return p, m, n
}

// uaCutNodes writes the machine's nodes on node-opcua directly (not
// through the link) and loses the agent's link to it.
type uaCutNodes struct {
	t             *testing.T
	p             *plant
	ra            *runningAgent
	m             *simMachine
	lose, restore func() // the link's loss (uaLinkLoss)
	w             *opcuatest.Writer
	running, good string // string identifiers in urn:plantedge:test
}

// set writes v to id and returns its source time (read back).
func (n *uaCutNodes) set(id string, v float64) time.Time {
	n.t.Helper()
	return n.w.Set(n.t, "urn:plantedge:test", id, v)
}

// stopAndRun stops the machine, makes during pieces, runs it again and
// then makes after pieces (none: the counter not written), the changes
// paced apart; it counts the stop and returns its source time and the
// run's.
func (n *uaCutNodes) stopAndRun(during, after int64) (stopAt, runAt time.Time) {
	n.t.Helper()
	stopAt = n.set(n.running, 0)
	n.pause()
	n.produce(during)
	n.pause()
	runAt = n.set(n.running, 1)
	n.pause()
	if after > 0 {
		n.produce(after)
	}
	n.m.mu.Lock()
	n.m.stops++
	n.m.mu.Unlock()
	return stopAt, runAt
}

// produce makes k pieces: the counter node up by k.
func (n *uaCutNodes) produce(k int64) {
	n.t.Helper()
	n.m.mu.Lock()
	n.m.good += k
	g := n.m.good
	n.m.mu.Unlock()
	n.set(n.good, float64(g))
}

// pause spaces two changes of the machine's more than the sampling
// interval (50 ms), so that each one is sampled: the machine's pace, not
// a wait for something.
func (n *uaCutNodes) pause() { time.Sleep(300 * time.Millisecond) }

// cut loses the link and waits until the agent's source is not connected
// (a silent loss: found at heartbeat_timeout).
func (n *uaCutNodes) cut() {
	n.t.Helper()
	n.lose()
	waitFor(n.t, 30*time.Second, "the source not connected", func() (bool, string) {
		for _, s := range n.ra.a.Status().Sources {
			if s.Name == "line1" {
				return s.State != "connected", s.State
			}
		}
		return false, "no source line1"
	})
	for _, s := range n.ra.a.Status().Machines {
		if s.ID == n.m.id && (s.State != "unknown" || s.UnknownBecause != "source down" || s.LastKnownState != "running") {
			n.t.Errorf("during the cut: state %q, last known %q, because %q; want unknown, running, source down", s.State, s.LastKnownState, s.UnknownBecause)
		}
	}
}

// back brings the link back (a silent one once silent as long as it is
// to be).
func (n *uaCutNodes) back() { n.restore() }

// wantLines checks that Odoo has exactly one downtime line, closed, from
// stopAt to runAt (Odoo keeps seconds).
func (n *uaCutNodes) wantLines(stopAt, runAt time.Time) {
	n.t.Helper()
	ls := n.p.odoo.Productivity()
	if len(ls) != 1 || !ls[0].Start.Equal(stopAt.Truncate(time.Second)) || !ls[0].End.Equal(runAt.Truncate(time.Second)) {
		n.t.Errorf("downtime lines %+v, want one from the stop at %s to the run at %s", ls, stopAt.UTC().Format(time.StampMilli), runAt.UTC().Format(time.StampMilli))
	}
}
