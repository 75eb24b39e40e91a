package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandsOverUnixSocket: with `listen: unix:PATH` (SPEC, Commands),
// status (human and --json) and flush talk to the running agent over the
// socket — flush's drained is the agent's, and the quantity is in Odoo
// when it returns — and when the agent is stopped, status reads the buffer
// file and says so, and flush exits 2. (The agent package's
// TestUnixSocketListen holds the API client alone.)
func TestCommandsOverUnixSocket(t *testing.T) {
	b := newBench(t, 17)
	// A socket's path is at most 107 bytes: t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "pe-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	b.editConfig(fmt.Sprintf("listen: %q", b.listen), fmt.Sprintf("listen: %q", "unix:"+sock))
	b.startAgent()
	b.produce(3)
	b.waitQty()

	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, "site cli-test — agent running") || !strings.Contains(out, "press-1") {
		t.Errorf("status over the socket: %v\n%s", err, out)
	}
	out, err = cli(t, "status", "-c", b.cfgPath, "--json")
	var st struct {
		Site         string `json:"site"`
		AgentRunning bool   `json:"agent_running"`
		Odoo         struct {
			State string `json:"state"`
		} `json:"odoo"`
		Machines []struct {
			ID string `json:"id"`
		} `json:"machines"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Site != "cli-test" || !st.AgentRunning || st.Odoo.State != "online" || len(st.Machines) != 1 {
		t.Errorf("status --json over the socket: %v %+v\n%s", err, st, out)
	}

	// Odoo was away: records wait in the buffer, and the agent its
	// backoff, which flush skips.
	b.odoo.SetDown(true)
	b.produce(2)
	b.waitPending(2)
	b.odoo.SetDown(false)
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s")
	if err != nil || !strings.Contains(out, "drained") {
		t.Fatalf("flush over the socket: %v\n%s", err, out)
	}
	if got, want := b.qty(), float64(b.good-b.start); got != want {
		t.Errorf("Odoo has %v once flush drained, want %v", got, want)
	}

	b.stopAgent()
	out, err = cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, "AGENT NOT RUNNING (read from the buffer file)") {
		t.Errorf("status, agent stopped: %v\n%s", err, out)
	}
	if out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s"); exitCode(err) != 2 {
		t.Errorf("flush, agent stopped: exit %d (%v), want 2\n%s", exitCode(err), err, out)
	}
}
