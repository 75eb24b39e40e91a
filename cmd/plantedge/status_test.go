package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

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

func TestStatusShowsTheConfigFile(t *testing.T) {
	var out strings.Builder
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml",
		ChangedSinceLoaded: true, LastReloadError: "plantedge.yaml:4:9: yaml: bad", LastReloadErrorAgeSeconds: 42}})
	if s := out.String(); !strings.Contains(s, "CONFIG RELOAD REJECTED 42s ago: plantedge.yaml:4:9: yaml: bad") {
		t.Errorf("rejected reload not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml", ChangedSinceLoaded: true}})
	if s := out.String(); !strings.Contains(s, "CONFIG FILE CHANGED since the agent read it") {
		t.Errorf("changed file not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml",
		ChangedSinceLoaded: true, RestartNeededFor: []string{"site", "odoo"}}})
	if s := out.String(); !strings.Contains(s, "CONFIG CHANGES WAIT FOR A RESTART (site, odoo): a reload does not apply them; systemctl restart plantedge") {
		t.Errorf("restart-only changes not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml"}})
	if s := out.String(); strings.Contains(s, "CONFIG") {
		t.Errorf("a config in step shown:\n%s", s)
	}
}

// A refused key that came as the systemd credential: the hint says to
// restart (systemd copies the key at the start), not that flush tries it.
func TestStatusHintForARefusedCredential(t *testing.T) {
	var out strings.Builder
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 50,
		KeyFrom: "the systemd credential odoo-api-key"}})
	if s := out.String(); !strings.Contains(s, "sudo systemctl restart plantedge") || strings.Contains(s, "flush tries it now") {
		t.Errorf("hint:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 50,
		KeyFrom: "api_key_file /etc/plantedge/odoo-api-key"}})
	if s := out.String(); !strings.Contains(s, "flush tries it now") {
		t.Errorf("hint:\n%s", s)
	}
}

func TestTimeoutFlagTakesSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "2.5": 2500 * time.Millisecond, "90s": 90 * time.Second, "5m": 5 * time.Minute} {
		var d secondsOrDuration
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"-1", "five", "1e300"} {
		var d secondsOrDuration
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %v", in, time.Duration(d))
		}
	}
}
