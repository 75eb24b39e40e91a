package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// A crash loop, as systemd's Restart= makes it: `plantedge run` killed
// (SIGKILL) once its OPC UA source is connected, and started again. A
// killed agent cannot close its session; the server keeps it for its
// lifetime (gopcua's never drops it: counted by opcuatest.Sessions; it
// answers a lifetime of 0, so the agent says the default). The
// agent keeps what closes it in the buffer file, and the next start
// closes it before its source connects: one session open after each
// start, the live one (before: one more per start, 4 at the fourth). The
// agent says so at the next start, and after three unclean ends in a
// row, each run started within the session lifetime of the next, warns
// of the crash loop; it starts the source at once all the same
// (connected again after every kill). A clean stop (SIGTERM) ends the
// count and closes the session: its next start says nothing.
func TestCrashLoopIsSaidWithTheSessionsItLeaves(t *testing.T) {
	b := newBench(t, 17)
	plc, err := opcuatest.Start(context.Background(), 0, map[string]any{"press-ua.Good": int64(0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plc.Close)
	b.odoo.AddWorkcenter("WC-PRESS-UA", "press-ua")
	raw, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw) + fmt.Sprintf("  - id: press-ua\n    workcenter: WC-PRESS-UA\n    good_count: { opcua: { server: plc, node: %q } }\n"+
		"opcua:\n  - { name: plc, endpoint: %q }\n", plc.NodeID("press-ua.Good"), plc.Endpoint())
	if err := os.WriteFile(b.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api := agent.NewAPIClient(b.listen)
	const unclean, crashLoop = "did not stop cleanly", "crash loop"
	// run starts the agent and waits for its OPC UA source; its log so far.
	run := func(i int) (*exec.Cmd, *syncBuffer, chan error) {
		t.Helper()
		cmd := mainCmd(os.Args[0], "run", "-c", b.cfgPath)
		logs, exited := startMain(t, cmd)
		waitUntil(t, 60*time.Second, fmt.Sprintf("run %d: the OPC UA source connected", i), func() (bool, string) {
			st, _ := api.Status(context.Background())
			for _, s := range st.Sources {
				if s.Name == "plc" && s.State == "connected" {
					return true, ""
				}
			}
			return false, logs.String()
		})
		return cmd, logs, exited
	}
	for i := 1; i <= 4; i++ {
		cmd, logs, exited := run(i)
		waitUntil(t, 60*time.Second, fmt.Sprintf("run %d: one session open on the server, this run's (the killed run's closed)", i), func() (bool, string) {
			n := plc.Sessions().Open()
			return n == 1, fmt.Sprintf("%d open", n)
		})
		// The killed run's session is counted where operators watch:
		// plantedge_source_left_sessions_closed_total, one a start after a kill.
		want := 0.0
		if i > 1 {
			want = 1
		}
		waitUntil(t, 30*time.Second, fmt.Sprintf("run %d: metrics count %v left session closed", i, want), func() (bool, string) {
			v, err := leftSessionsClosed(b.listen)
			return err == nil && v == want, fmt.Sprintf("%v (%v)", v, err)
		})
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		exited <- <-exited // for the cleanup
		l := logs.String()
		switch {
		case i == 1 && (strings.Contains(l, unclean) || strings.Contains(l, crashLoop)):
			t.Errorf("run 1 (a new data_dir) says the previous run ended uncleanly:\n%s", l)
		case (i == 2 || i == 3) && (!strings.Contains(l, unclean) || strings.Contains(l, crashLoop)):
			t.Errorf("run %d after a kill: want %q and no crash loop:\n%s", i, unclean, l)
		case i == 4 && (!strings.Contains(l, "level=WARN msg=\"crash loop") || !strings.Contains(l, "unclean_runs=3")):
			t.Errorf("run 4 after three kills in a row: no crash-loop warning with unclean_runs=3:\n%s", l)
		}
		// gopcua's server answers a session lifetime of 0: none is known
		// from the session kept, so the default is said.
		if i == 2 && !strings.Contains(l, "one the server does not close is kept there for its lifetime (2 minutes by default)") ||
			i == 4 && !strings.Contains(l, "leaves its session on the server for its lifetime (2 minutes by default)") {
			t.Errorf("run %d: the session lifetime not said as the default (none known):\n%s", i, l)
		}
	}
	cmd, _, exited := run(5)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("run 5 exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run 5 did not stop within 30 s of SIGTERM")
	}
	if n := plc.Sessions().Open(); n != 0 {
		t.Errorf("after the clean stop: %d sessions open, want none", n)
	}
	_, logs, _ := run(6)
	if l := logs.String(); strings.Contains(l, unclean) || strings.Contains(l, crashLoop) {
		t.Errorf("the start after a clean stop says the previous run ended uncleanly:\n%s", l)
	}
}

// leftSessionsClosed reads plantedge_source_left_sessions_closed_total of
// the source "plc" from the agent's /metrics.
func leftSessionsClosed(listen string) (float64, error) {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	const series = `plantedge_source_left_sessions_closed_total{source="plc"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, series); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", strings.TrimSpace(series))
}
