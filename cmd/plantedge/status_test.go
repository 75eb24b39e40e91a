package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/agent"
)

// TestStatusShowsPolledNodes: a source whose server cannot monitor some
// nodes says how many it polls, next to its state.
func TestStatusShowsPolledNodes(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "line1", Kind: "opcua", State: "connected", Sessions: 1, PolledNodes: 3},
		{Name: "broker", Kind: "mqtt", State: "connected", Sessions: 1},
	}})
	var line1, broker string
	for l := range strings.Lines(out.String()) {
		switch {
		case strings.HasPrefix(l, "  line1 "):
			line1 = l
		case strings.HasPrefix(l, "  broker "):
			broker = l
		}
	}
	if !strings.Contains(line1, "connected (polling 3 nodes)") || strings.Contains(broker, "polling") {
		t.Errorf("sources:\n%s", out.String())
	}
}
