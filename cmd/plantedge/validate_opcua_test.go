package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
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
`, dir, srv.Endpoint(), ns)
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runValidate(t, "-c", path, "--opcua")
	if exitCode(err) != 1 || err.Error() != "opcua: 4 problems" {
		t.Errorf("err = %v (code %d), want 4 problems", err, exitCode(err))
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
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
