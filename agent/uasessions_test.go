package agent_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
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

// An OPC UA source renamed while the agent was down after a kill: the
// session the killed run kept under the old name is closed by the renamed
// source as it starts, the same server, security and user (before, the
// new name had nothing kept: 2 sessions open on the server, gopcua's
// never drops one, and the old name's key stayed in the buffer file for
// good). Renamed and moved to another server, no configured source can
// close it (that takes the credentials and the certificate of the source
// that made it): the key is forgotten, and the log says so. No key is
// left under a name no longer configured.
func TestRenamedOPCUASourceClosesTheSessionKeptUnderItsOldName(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press-1"}})
	api := agent.NewAPIClient(p.listen)
	killed := func() {
		t.Helper()
		child := agenttest.StartChild(t, p.cfgPath)
		defer func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() }()
		waitChildSubscribed(t, api)
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, _ = child.Process.Wait()
	}
	rename := func(from, to string) {
		t.Helper()
		raw, err := os.ReadFile(p.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		renamed := strings.NewReplacer("name: "+from+"\n", "name: "+to+"\n", "server: "+from+",", "server: "+to+",").Replace(string(raw))
		if strings.Count(renamed, to) != 3 {
			t.Fatalf("not renamed:\n%s", renamed)
		}
		p.writeConfig(renamed)
	}
	killed()
	if n := p.ua.Sessions().Open(); n != 1 {
		t.Fatalf("%d sessions open after the kill, want the one it left", n)
	}
	rename("line1", "press-line")
	ra := p.startAgentWith(false)
	waitFor(t, 30*time.Second, "one session open, the renamed source's, the killed run's closed", func() (bool, string) {
		n := p.ua.Sessions().Open()
		return n == 1 && strings.Contains(p.logs.String(), "closed_by=press-line"), fmt.Sprint(n, " open; log:\n", p.logs.String())
	})
	ra.stopNow(t)

	killed()
	plc2, err := opcuatest.Start(context.Background(), 0, map[string]any{"ua-press-1.Good": int64(1000), "ua-press-1.Running": true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plc2.Close)
	rename("press-line", "line2")
	p.editConfig(p.ua.Endpoint(), plc2.Endpoint())
	ra = p.startAgentWith(false)
	waitFor(t, 30*time.Second, "the key kept under press-line forgotten, said", func() (bool, string) {
		l := p.logs.String()
		return strings.Contains(l, "forgot the OPC UA session kept for a source no longer configured") && strings.Contains(l, "source=press-line"), l
	})
	if n := p.ua.Sessions().Open(); n != 1 {
		t.Errorf("%d sessions open on the first server, want the one the second kill left (nothing configured can close it)", n)
	}
	ra.stopNow(t)
	if keys := p.keptSessionKeys(); len(keys) != 0 {
		t.Errorf("sessions kept after a clean stop: %v, want none", keys)
	}
}

// An OPC UA source still configured but not started — the machine that
// read it taken out of the configuration after a kill, no node mapped to
// it — kept the session the killed run left under its name for good: no
// start closed it nor forgot it (the sweep looked only at names no longer
// configured). It is dealt with as one no longer configured: no other
// source for its server, security and user here, forgotten, and said.
func TestUnstartedOPCUASourceForgetsItsKeptSession(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"m-1", "ua-press-1"}})
	api := agent.NewAPIClient(p.listen)
	child := agenttest.StartChild(t, p.cfgPath)
	defer func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() }()
	waitFor(t, 30*time.Second, "the child's OPC UA source connected", func() (bool, string) {
		st, err := api.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Sources {
			if s.Kind == "opcua" && s.State == "connected" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Sources)
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = child.Process.Wait()
	if n := p.ua.Sessions().Open(); n != 1 {
		t.Fatalf("%d sessions open after the kill, want the one it left", n)
	}
	p.dropLastMachine("ua-press-1")
	ra := p.startAgentWith(false)
	waitFor(t, 30*time.Second, "the key kept under line1 forgotten, said", func() (bool, string) {
		l := p.logs.String()
		return strings.Contains(l, "forgot the OPC UA session kept for a source configured but not started") && strings.Contains(l, "source=line1"), l
	})
	// gopcua's server answers a lifetime of 0: none known, the default said.
	if l := p.logs.String(); !strings.Contains(l, "the server keeps it until its lifetime ends (2 minutes by default)") {
		t.Errorf("the forgotten session's lifetime not said as the default:\n%s", l)
	}
	ra.stopNow(t)
	if keys := p.keptSessionKeys(); len(keys) != 0 {
		t.Errorf("sessions kept after the clean stop: %v, want none", keys)
	}
}

// keptSessionKeys lists the OPC UA sessions the stopped agent's buffer
// file keeps (opcsession/<source>).
func (p *plant) keptSessionKeys() []string {
	p.t.Helper()
	cfg, err := config.Load(p.cfgPath)
	if err != nil {
		p.t.Fatal(err)
	}
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		p.t.Fatal(err)
	}
	defer buf.Close()
	var keys []string
	if err := buf.MetaPrefix("opcsession/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		p.t.Fatal(err)
	}
	return keys
}
