package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
)

// TestValidateMQTT subscribes to the configured topics on a running broker:
// retained messages that fit pass, a missing field and a text counter are
// problems at their place in the file, a quiet topic is not checked, and an
// unreachable broker is a problem.
func TestValidateMQTT(t *testing.T) {
	b, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	for topic, payload := range map[string]string{
		"p1/state":    `{"run": true, "reason": "JAM", "ts": "2026-11-30T08:00:00Z"}`,
		"p1/counters": `{"good": 1200, "scrap": 3}`,
		"p2/counters": `{"good": "many"}`,
	} {
		if err := b.Publish(topic, []byte(payload), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	y := fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test }
  - { name: gone, url: "tcp://127.0.0.1:1", client_id: pe-gone }
machines:
  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, topic: p1/counters, field: good } }
    scrap_count: { mqtt: { broker: b, topic: p1/counters, field: scrap } }
    running: { mqtt: { broker: b, topic: p1/state, field: run, timestamp_field: ts } }
    downtime_reason: { mqtt: { broker: b, topic: p1/state, field: cause } }
  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: p2/counters, field: good } }
    running: { mqtt: { broker: b, topic: p2/state, field: run } }
  - id: p3
    workcenter: WC3
    good_count: { mqtt: { broker: gone, topic: p3/counters, field: good } }
`, dir, b.URL())
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	if exitCode(err) != 1 || err.Error() != "mqtt: 3 problems" {
		t.Errorf("err = %v (code %d), want 3 problems", err, exitCode(err))
	}
	for _, want := range []string{
		`mqtt b: p1 good_count: p1/counters field good: OK ("{\"good\": 1200, \"scrap\": 3}")`,
		`mqtt b: p1 running: p1/state field run: OK`,
		fmt.Sprintf("mqtt: problem: %s:13:67: machines[0].downtime_reason.mqtt.field: p1/state field cause: field not found", path),
		fmt.Sprintf("mqtt: problem: %s:16:65: machines[1].good_count.mqtt.field: p2/counters field good: \"many\" is not a number", path),
		"mqtt b: p2 running: p2/state field run: no message within 5s, not checked",
		fmt.Sprintf("mqtt: problem: %s:6:", path),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
