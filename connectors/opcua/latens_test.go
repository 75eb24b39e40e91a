package opcua

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

// PEERS complaint 5, "connected but no data" after a server restart: a
// server that takes sessions before its project has registered the plant's
// namespace (still loading its address space) — the node written
// nsu=<uri>;... resolves to nothing when the session starts. Its server
// clock ticks, so the session lasts; the node must be read once the
// namespace is there, in that session, not only after the agent or the
// server restarts again.
// The same for a node written ns=2 that an earlier session pinned to the
// namespace's URI (the index, now beyond the array, is no other namespace's).
// Subscribed and polled.
func TestNamespaceRegisteredAfterTheSessionStartedIsRead(t *testing.T) {
	for _, tc := range []struct {
		name, node string
		pins       *memPins
		mode       string
	}{
		{"nsu", "nsu=urn:plantedge:late;s=Late", nil, ""},
		{"pinned", "ns=2;s=Late", &memPins{m: map[string]string{"ns=2;s=Late": "urn:plantedge:late"}}, ""},
		{"polled", "nsu=urn:plantedge:late;s=Late", nil, ModePoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startInProcess(t, 0)
			col := newCollector()
			cfg := Config{Endpoint: ts.url, Nodes: []string{"ns=1;s=Counter", tc.node}, Mode: tc.mode,
				PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 3 * time.Second}
			if tc.pins != nil {
				cfg.Pins = tc.pins
			}
			src := runSource(t, cfg, col)
			col.waitFor(t, 0, 10*time.Second, "the counter", func(s connectors.Sample) bool { return s.Address == "ns=1;s=Counter" && s.Good })
			waitUntil(t, 10*time.Second, func() bool { return len(src.Stats().Refused) == 1 })
			late := server.NewNodeNameSpace(ts.srv, "urn:plantedge:late")
			late.AddNode(varNode(ua.NewStringNodeID(late.ID(), "Late"), "Late", func() *ua.DataValue { return dv(int32(42), ua.StatusOK) }))
			col.waitFor(t, 0, 15*time.Second, "the late namespace's node", func(s connectors.Sample) bool {
				return s.Address == tc.node && s.Good && s.Value == int64(42)
			})
			waitUntil(t, 10*time.Second, func() bool { return len(src.Stats().Refused) == 0 })
			if st := src.Stats(); st.SessionsCreated != 1 {
				t.Errorf("%d sessions, want the one throughout", st.SessionsCreated)
			}
		})
	}
}

// The README says a node whose namespace the server lacks is tried again
// with the namespace array read anew every 5 s. With the default
// heartbeat_timeout (30 s), subscribed, the node must be read within about
// that of its namespace's registration, not only at the next retry of
// refused nodes (a third of heartbeat_timeout: 10 s; it was 10.05 s).
func TestLateNamespaceReadWithinFiveSecondsAtTheDefaultHeartbeat(t *testing.T) {
	ts := startInProcess(t, 0)
	col := newCollector()
	cfg := Config{Endpoint: ts.url, Nodes: []string{"ns=1;s=Counter", "nsu=urn:plantedge:late;s=Late"},
		PublishingInterval: 50 * time.Millisecond}
	src := runSource(t, cfg, col)
	col.waitFor(t, 0, 10*time.Second, "the counter", func(s connectors.Sample) bool { return s.Address == "ns=1;s=Counter" && s.Good })
	waitUntil(t, 10*time.Second, func() bool { return len(src.Stats().Refused) == 1 })
	late := server.NewNodeNameSpace(ts.srv, "urn:plantedge:late")
	late.AddNode(varNode(ua.NewStringNodeID(late.ID(), "Late"), "Late", func() *ua.DataValue { return dv(int32(42), ua.StatusOK) }))
	start := time.Now()
	col.waitFor(t, 0, 20*time.Second, "the late namespace's node", func(s connectors.Sample) bool {
		return s.Address == "nsu=urn:plantedge:late;s=Late" && s.Good && s.Value == int64(42)
	})
	took := time.Since(start)
	t.Logf("read %v after its namespace was registered", took.Round(10*time.Millisecond))
	if took > 7500*time.Millisecond {
		t.Errorf("the late node read %v after its namespace was registered; the README says its namespace array is read again every 5 s", took.Round(10*time.Millisecond))
	}
}
