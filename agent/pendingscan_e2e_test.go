package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
)

// TestStatusAndMetricsSayPendingCountsAreBeingRead: after a start with a
// backlog bigger than a scan may read while the caller waits (the
// many-PLCs benchmark's last scrape of /metrics took 35–42 s, past
// Prometheus's 10 s timeout), status and /metrics answer at once and say
// the pending counts are being read, rather than 0 pending as if known;
// once read, status has the exact sums. (Not parallel: the bound is the
// package's.)
func TestStatusAndMetricsSayPendingCountsAreBeingRead(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	p.odoo.SetDown(true)
	for i := range 5 {
		p.produce(p.machines[0], 1, 0)
		p.waitPending(ra, i+1) // a record each
	}
	ra.stop()

	release, restore := agent.SetPendingScanBound(2)
	t.Cleanup(restore)           // after the agent's stop (cleanups run last first)
	ra = p.startAgentWith(false) // a fresh start: no counts yet
	defer release()
	st := ra.a.Status()
	if st.Buffer.PendingCountsReading != 5 || st.Machines[0].Pending != 0 || st.Buffer.OldestForwardableAgeSeconds == 0 {
		t.Errorf("status during the read: reading %d, press-1 pending %v, oldest forwardable %vs; want 5 records being read and the oldest record's age",
			st.Buffer.PendingCountsReading, st.Machines[0].Pending, st.Buffer.OldestForwardableAgeSeconds)
	}
	if line := p.metricLine("plantedge_buffer_pending_counts_reading"); line != "5" {
		t.Errorf("/metrics during the read: %q", line)
	}
	release()
	waitFor(t, 30*time.Second, "the pending counts read", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.PendingCountsReading == 0 && st.Machines[0].Pending == 5, fmt.Sprintf("reading %d, press-1 pending %v", st.Buffer.PendingCountsReading, st.Machines[0].Pending)
	})
	if line := p.metricLine("plantedge_buffer_pending_counts_reading"); line != "0" {
		t.Errorf("/metrics once read: %q", line)
	}
}
