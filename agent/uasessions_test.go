package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// The agent's ways of leaving an OPC UA server close its session there,
// with its subscriptions (a PLC has few session slots, shared with the
// HMI): a reload that moves the source to another server closes the old
// server's session, and the stop (SIGTERM ends Run's context) the new
// one's. Counted by the servers (opcuatest.Sessions: gopcua's server
// never drops a session by itself).
func TestReloadAndStopCloseTheirOPCUASessions(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	ra := p.startAgent()
	if n := p.ua.Sessions().Open(); n != 1 {
		t.Fatalf("%d sessions open on the server, want the agent's one", n)
	}
	plc2, err := opcuatest.Start(context.Background(), 0, map[string]any{"ua-press-1.Good": int64(0), "ua-press-1.Running": true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plc2.Close)
	p.editConfig(p.ua.Endpoint(), plc2.Endpoint())
	p.reload(ra)
	// Connected, so the stop below is of a running session (a stop during
	// the connect is connectors/opcua's TestStopDuringConnectLeavesNoSession).
	waitFor(t, 20*time.Second, "the agent connected to the other server", func() (bool, string) {
		st := ra.a.Status()
		for _, src := range st.Sources {
			if src.Kind == "opcua" && (src.State != "connected" || src.Sessions == 0) {
				return false, fmt.Sprintf("%+v", src)
			}
		}
		return plc2.Sessions().Open() == 1, fmt.Sprint(plc2.Sessions().Open(), " sessions on the other server")
	})
	if n := p.ua.Sessions().Open(); n != 0 {
		t.Errorf("after the reload: %d sessions left on the old server", n)
	}
	ra.stopNow(t)
	if n := plc2.Sessions().Open(); n != 0 {
		t.Errorf("after the stop: %d sessions left on the server", n)
	}
	if n := p.ua.Sessions().KeptSubscriptions() + plc2.Sessions().KeptSubscriptions(); n != 0 {
		t.Errorf("%d sessions closed keeping their subscriptions", n)
	}
}
