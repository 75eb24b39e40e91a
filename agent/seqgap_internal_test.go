package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

// counterValue is the value of the agent's counter name with label source.
func (a *Agent) counterValue(t *testing.T, name, source string) float64 {
	t.Helper()
	mfs, err := a.opts.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A seq gap shown on a second device right after one shown on a first is
// logged with it (one line a minute per edge node) but counted on its own:
// the metric counts each gap.
func TestSparkplugSeqGapsOfTwoDevicesBothCounted(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: p1, workcenter: W, good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Good } } }
`)
	var logs agenttest.SyncBuffer
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Now()
	send := func(dev string, seq int) {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: "spBv1.0/plant/DDATA/edge1/" + dev,
			Payload: sptest.Payload{Seq: seq}.Encode(), Good: true, ReceiveTime: now}})
	}
	send("press1", 0)
	send("serial-1", 2) // a gap on serial-1
	send("serial-2", 4) // and right after, one on serial-2
	send("press1", 6)   // and on the device read
	if got := a.counterValue(t, "plantedge_sparkplug_seq_gaps_total", "b"); got != 3 {
		t.Errorf("seq gaps counted %v, want 3", got)
	}
	if n := strings.Count(logs.String(), "Sparkplug seq"); n != 1 {
		t.Errorf("%d lines, want 1 (one edge node, within a minute):\n%s", n, logs.String())
	}
}
