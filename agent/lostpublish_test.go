package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/nettest"
)

// A link to the PLC that stalls longer than gopcua waits for a Publish
// answer (10 s, the request timeout, or a third of heartbeat_timeout when
// that is longer) and comes back within heartbeat_timeout, set to 30 s (a
// slow server, a link known to stall): the answer that carried the stop
// comes too late and gopcua drops it; the session goes on. The stop was
// never seen — no downtime line, the machine running on in the agent. Now
// the silence is followed by a read of the monitored nodes, which brings
// the stop with its source time: one downtime line, from the stop to the
// run. (With the default heartbeat_timeout, 10 s, such a silence ends the
// session, and the next one's first read brings the stop.)
func TestEndToEndStopInALostPublishAnswerIsBooked(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	// The requests go through; the server's answers can be held.
	var up nettest.BlackHole
	var down nettest.Stall
	px := nettest.PipeProxy(t, strings.TrimPrefix(p.ua.Endpoint(), "opc.tcp://"), up.Pipe, down.Pipe)
	t.Cleanup(down.Release)
	p.editConfig(p.ua.Endpoint(), "opc.tcp://"+px)
	p.editConfig("    publishing_interval: 100ms\n", "    publishing_interval: 100ms\n    heartbeat_timeout: 30s\n")
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 5, 0)
	p.waitExact(ra, 30*time.Second)

	down.Hold()
	stopAt := time.Now().UTC().Truncate(time.Second)
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
	p.ua.SetAt(m.id+".Running", false, stopAt)
	// 12 s: past the 10 s gopcua waits for the answer that carries the
	// stop, short of the 30 s heartbeat.
	time.Sleep(12 * time.Second)
	down.Release()
	waitFor(t, 30*time.Second, "the stop seen", func() (bool, string) {
		for _, s := range ra.a.Status().Machines {
			if s.ID == m.id {
				return s.State == "stopped", s.State
			}
		}
		return false, "no machine"
	})
	p.run(m)
	p.produce(m, 3, 0)
	p.waitExact(ra, 30*time.Second)
	for _, l := range p.odoo.Productivity() {
		if !l.Start.Equal(stopAt) || l.End.Before(stopAt.Add(12*time.Second)) {
			t.Errorf("downtime line %s – %s, want from the stop at %s to the run after the link came back", l.Start, l.End, stopAt)
		}
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "reading its nodes, in case the answer came too late") || strings.Contains(logs, "heartbeat lost") {
		t.Error("want the catch-up read logged, and no heartbeat lost")
	}
}
