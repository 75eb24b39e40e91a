package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
)

// TestValidateOPCUA reads the configured nodes on a running server: a good
// counter, run flag and reason pass; a node that does not exist, a folder
// and a text where a counter must be are problems, each at its place in the
// file; an unreachable server is one.
func TestValidateOPCUA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := opcuatest.Start(ctx, 0, map[string]any{
		"P1.Good": uint32(1234), "P1.Run": true, "P1.Reason": "JAM", "P2.Name": "press-2", "P1.Scrap": int16(300),
		"P5.State": int32(2), "P6.State": "FAULT",
	})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(srv.Close)
	ns := srv.NS()
	dir := t.TempDir()
	y := fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
opcua:
  - { name: plc, endpoint: %q }
  - { name: gone, endpoint: "opc.tcp://127.0.0.1:1" }
machines:
  - id: p1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=%[3]d;s=P1.Good" } }
    running: { opcua: { server: plc, node: "ns=%[3]d;s=P1.Run" } }
    downtime_reason: { opcua: { server: plc, node: "ns=%[3]d;s=P1.Reason" } }
  - id: p2
    workcenter: WC2
    good_count: { opcua: { server: plc, node: "ns=%[3]d;s=P2.Name" } }
    scrap_count: { opcua: { server: plc, node: "ns=%[3]d;s=P2.Missing" } }
    running: { opcua: { server: plc, node: "ns=%[3]d;i=85" } }
  - id: p3
    workcenter: WC3
    good_count: { opcua: { server: gone, node: "ns=2;s=X" } }
  - id: p4
    workcenter: WC4
    scrap_count: { opcua: { server: plc, node: "ns=%[3]d;s=P1.Scrap" } }
  - id: p5
    workcenter: WC5
    running: { opcua: { server: plc, node: "ns=%[3]d;s=P5.State" } }
  - id: p6
    workcenter: WC6
    running: { opcua: { server: plc, node: "ns=%[3]d;s=P6.State" }, running_values: [RUNNING] }
  - id: p7
    workcenter: WC7
    running: { opcua: { server: plc, node: "ns=%[3]d;s=P6.State" } }
`, dir, srv.Endpoint(), ns)
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runValidate(t, "-c", path, "--opcua")
	if exitCode(err) != 1 || err.Error() != "opcua: 5 problems" {
		t.Errorf("err = %v (code %d), want 5 problems", err, exitCode(err))
	}
	for _, want := range []string{
		fmt.Sprintf("opcua plc: p1 good_count: ns=%d;s=P1.Good UInt32 = 1234", ns),
		fmt.Sprintf("opcua plc: p1 running: ns=%d;s=P1.Run Boolean = true", ns),
		fmt.Sprintf("opcua plc: p1 downtime_reason: ns=%d;s=P1.Reason String = JAM", ns),
		fmt.Sprintf("opcua: problem: %s:15:47: machines[1].good_count.opcua.node: ns=%d;s=P2.Name holds String press-2, which good_count cannot use", path, ns),
		fmt.Sprintf("opcua: problem: %s:16:48: machines[1].scrap_count.opcua.node: ns=%d;s=P2.Missing: BadNodeIdUnknown", path, ns),
		fmt.Sprintf("opcua: problem: %s:17:44: machines[1].running.opcua.node: ns=%d;i=85 is not a variable (node class Object)", path, ns),
		fmt.Sprintf("opcua: problem: %s:6:29: opcua[1].endpoint: gone (opc.tcp://127.0.0.1:1): ", path),
		// A 16-bit counter without rollover: a warning, not a problem.
		fmt.Sprintf("opcua: warning: %s:23:18: machines[3].scrap_count: ns=%d;s=P1.Scrap is Int16: a counter of that type wraps at 65536, and no rollover is set (set rollover: 65536", path, ns),
		// A state word or text read as a run bit (the uatypes probe: a
		// fault state booked no stop): a warning; with running_values, any
		// text is a state.
		fmt.Sprintf("opcua: warning: %s:26:14: machines[4].running: ns=%d;s=P5.State is Int32, not Boolean: every value but 0 reads as running", path, ns),
		fmt.Sprintf("opcua plc: p6 running: ns=%d;s=P6.State String = FAULT", ns),
		fmt.Sprintf("opcua: problem: %s:32:44: machines[6].running.opcua.node: ns=%d;s=P6.State holds String FAULT, which running cannot use", path, ns),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestValidateOPCUAFollowsTheAgentsPins: the agent pins what namespace
// each ns=N node meant when it first read it, and follows a server that
// renumbers its namespaces. validate --opcua checks the node the agent
// reads — asking the running agent for its pins, or reading a stopped
// one's buffer file — not the other namespace's node that ns=N now names,
// and says so; a pinned namespace gone from the server is a problem.
func TestValidateOPCUAFollowsTheAgentsPins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vars := map[string]any{"P1.Good": uint32(1234), "P1.Run": true}
	// The server comes back on the same port twice: one outside the
	// kernel's ephemeral range, which an outgoing connection could take
	// meanwhile (a fresh-clone CI: "bind: address already in use").
	port := nettest.FreePort(t)
	srv, err := opcuatest.Start(ctx, port, vars)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	endpoint := srv.Endpoint()
	ns := srv.NS()
	dir := t.TempDir()
	keyFile := agenttest.WriteKeyFile(t, dir, "0123456789abcdef0123456789abcdef")
	y := fmt.Sprintf(`site: test
data_dir: %s
listen: %s
odoo: { url: "http://127.0.0.1:1", database: prod, username: bot, api_key_file: %s }
opcua:
  - { name: plc, endpoint: %q }
machines:
  - id: p1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=%[5]d;s=P1.Good" } }
    running: { opcua: { server: plc, node: "ns=%[5]d;s=P1.Run" } }
`, filepath.Join(dir, "data"), agenttest.FreeAddr(t), keyFile, endpoint, ns)
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{Version: "test",
		Logger: slog.New(slog.NewTextHandler(agenttest.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	stopAgent := func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	}
	defer func() {
		if actx.Err() == nil {
			stopAgent()
		}
	}()
	api := agent.NewAPIClient(cfg.Listen).ForConfig(cfg)
	waitUntil(t, 20*time.Second, "both nodes pinned", func() (bool, string) {
		pins, err := api.NamespacePins(ctx)
		return err == nil && len(pins) == 2, fmt.Sprintf("%+v %v", pins, err)
	})
	out, _, err := runValidate(t, "-c", path, "--opcua")
	if err != nil || strings.Contains(out, "renumbered") || strings.Contains(out, "pins") {
		t.Errorf("validate with the agent running: %v\n%s", err, out)
	}
	stopAgent()
	srv.Close()

	// The server comes back with a namespace in front of the plant's whose
	// P1.Good is a text: ns=N;s=P1.Good now names that one.
	srv2, err := opcuatest.Start(ctx, port, vars, opcuatest.WithNamespaceBefore("urn:other", map[string]any{"P1.Good": "other module"}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	out, _, err = runValidate(t, "-c", path, "--opcua")
	if err != nil {
		t.Errorf("validate after the renumbering: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("opcua plc: p1 good_count: ns=%d;s=P1.Good UInt32 = 1234", ns),
		fmt.Sprintf("opcua: warning: %s:10:17: machines[0].good_count: ns=%d;s=P1.Good: the server renumbered its namespaces since the agent first read this node: ns=%[2]d (urn:plantedge:sim) is now ns=%d, where the agent reads it (write the node as nsu=urn:plantedge:sim;s=P1.Good", path, ns, srv2.NS()),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A machine added since, its node written ns=N like the others: N is
	// the other module now, so it could mean either — a problem, not a
	// check of the other module's node.
	added := y + fmt.Sprintf("  - id: p2\n    workcenter: WC2\n    good_count: { opcua: { server: plc, node: \"ns=%d;s=P2.Good\" } }\n", ns)
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runValidate(t, "-c", path, "--opcua")
	if exitCode(err) != 1 || !strings.Contains(out, fmt.Sprintf("machines[1].good_count.opcua.node: ns=%d;s=P2.Good: node id ns=%[1]d;s=P2.Good: ns=%[1]d meant urn:plantedge:sim for this server's other nodes", ns)) {
		t.Errorf("validate of a node added after the renumbering: %v\n%s", err, out)
	}
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	srv2.Close()

	// Back with the plant's namespace under another URI: the pinned nodes
	// are gone (ns=N names the other module's).
	srv3, err := opcuatest.Start(ctx, port, vars, opcuatest.WithNamespaceURI("urn:rebuilt"),
		opcuatest.WithNamespaceBefore("urn:other", map[string]any{"P1.Good": "other module", "P1.Run": false}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv3.Close()
	out, _, err = runValidate(t, "-c", path, "--opcua")
	if exitCode(err) != 1 || !strings.Contains(out, fmt.Sprintf("machines[0].good_count.opcua.node: ns=%d;s=P1.Good: node id ns=%[1]d;s=P1.Good: its namespace urn:plantedge:sim (ns=%[1]d when first read) is gone from the server", ns)) {
		t.Errorf("validate without the plant's namespace: %v\n%s", err, out)
	}
}

// TestValidateOPCUAArrayElement: a signal with index reads that element
// of an array node and shows it; an index beyond the array, or on a node
// that holds no array, is a problem at its index; an array read without
// index is a problem that says to set one.
func TestValidateOPCUAArrayElement(t *testing.T) {
	path, ns := validateOPCUAPlant(t, map[string]any{"Counts": []int32{10, 20}, "Scalar": int32(5)}, `
  - id: lane1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=Counts", index: 0 } }
  - id: lane2
    workcenter: WC2
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=Counts", index: 1 } }
  - id: lane9
    workcenter: WC9
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=Counts", index: 9 } }
  - id: one
    workcenter: WC3
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=Scalar", index: 0 } }
  - id: whole
    workcenter: WC4
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=Counts" } }
`)
	out, _, err := runValidate(t, "-c", path, "--opcua")
	if exitCode(err) != 1 || err.Error() != "opcua: 3 problems" {
		t.Errorf("err = %v (code %d), want 3 problems", err, exitCode(err))
	}
	for _, want := range []string{
		fmt.Sprintf("opcua plc: lane1 good_count: ns=%d;s=Counts[0] Int32 = 10", ns),
		fmt.Sprintf("opcua plc: lane2 good_count: ns=%d;s=Counts[1] Int32 = 20", ns),
		fmt.Sprintf("opcua: problem: %s:15:71: machines[2].good_count.opcua.index: ns=%d;s=Counts[9]: the array at ns=%[2]d;s=Counts has no element 9 (BadIndexRangeNoData)", path, ns),
		fmt.Sprintf("opcua: problem: %s:18:71: machines[3].good_count.opcua.index: ns=%d;s=Scalar[0]: ns=%[2]d;s=Scalar holds one Int32, no array (BadIndexRangeInvalid)", path, ns),
		fmt.Sprintf("opcua: problem: %s:21:47: machines[4].good_count.opcua.node: ns=%d;s=Counts holds Int32 (Int32 array), which good_count cannot use: Int32 array (set index: next to node: to read one element, 0 for the first)", path, ns),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A counter node of type Float (a PLC's REAL): shown as the decimal the
// PLC shows (100.1, not 100.0999984741211), and warned of: a REAL holds
// whole numbers exactly only up to 16,777,216, past which a step of 1 is
// lost (mapping46). A Double counter is exact up to 2^53: no warning.
func TestValidateOPCUAFloatCounter(t *testing.T) {
	path, ns := validateOPCUAPlant(t, map[string]any{"P8.Good": float32(100.1), "P9.Good": float64(5)}, `
  - id: p8
    workcenter: WC8
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=P8.Good" }, factor: 0.1 }
  - id: p9
    workcenter: WC9
    good_count: { opcua: { server: plc, node: "ns=%[1]d;s=P9.Good" } }
`)
	out, _, err := runValidate(t, "-c", path, "--opcua")
	if err != nil {
		t.Errorf("err = %v, want none (a warning only)", err)
	}
	for _, want := range []string{
		fmt.Sprintf("opcua plc: p8 good_count: ns=%d;s=P8.Good Float = 100.1\n", ns),
		fmt.Sprintf("opcua: warning: %s:9:17: machines[0].good_count: ns=%d;s=P8.Good is Float: it holds whole numbers exactly only up to 16777216, "+
			"past which a step of 1 is lost (read a DINT/UDINT counter, or a Double, if the PLC has one)", path, ns),
		fmt.Sprintf("opcua plc: p9 good_count: ns=%d;s=P9.Good Double = 5\n", ns),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "P9.Good is Double") {
		t.Errorf("a Double counter warned of:\n%s", out)
	}
}

// validateOPCUAPlant starts an OPC UA server with vars and writes a
// configuration whose machines (after "machines:", with ns=%[1]d for the
// server's namespace) read it from source plc, the machines starting on
// the configuration's line 6. It returns the file's path and the namespace.
func validateOPCUAPlant(t *testing.T, vars map[string]any, machines string) (string, uint16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	srv, err := opcuatest.Start(ctx, 0, vars)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	y := fmt.Sprintf("site: test\ndata_dir: %s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n"+
		"opcua:\n  - { name: plc, endpoint: %q }\nmachines:", dir, srv.Endpoint()) + fmt.Sprintf(machines, srv.NS())
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, srv.NS()
}

// A server that takes no anonymous session: validate --opcua says so at
// the server's entry and asks for a user (TestSourcePasswordsNeverShown
// has a refused user's password).
func TestValidateOPCUAAnonymousRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := opcuatest.Start(ctx, 0, map[string]any{"P1.Good": uint32(1)}, opcuatest.WithUser("operator", "s3cret"))
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
opcua:
  - { name: plc, endpoint: %q }
machines:
  - id: p1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: %q } }
`, dir, srv.Endpoint(), srv.NodeID("P1.Good"))), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runValidate(t, "-c", path, "--opcua")
	want := fmt.Sprintf("opcua: problem: %s:5:5: opcua[0]: plc (%s): the server refused an anonymous session: ", path, srv.Endpoint())
	if exitCode(err) != 1 || !strings.Contains(out, want) || !strings.Contains(out, "set username and password_file") {
		t.Errorf("err = %v (code %d); output lacks %q:\n%s", err, exitCode(err), want, out)
	}
}
