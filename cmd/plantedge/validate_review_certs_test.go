package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/internal/sptest"
)

// The problem for a refused subscription to the BIRTH certificates names
// the filters refused, each once, however many signals read the edge node
// (it listed all the node's filters again for every signal).
func TestValidateMQTTSparkplugCertificatesRefusedOnce(t *testing.T) {
	b, err := mqtttest.Start("127.0.0.1:52201")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	p := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(5)},
		{Name: "Counters/Scrap", Alias: 2, HasAlias: true, Datatype: sptest.Int32, Value: int64(1)},
	}}.Encode()
	if err := b.Publish("spBv1.0/plant/DBIRTH/edge1/press1", p, true, 1); err != nil {
		t.Fatal(err)
	}
	b.DenyRead("$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/+", true)
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test, sparkplug_certificates: true }
machines:
  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Good } }
    scrap_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Scrap } }
`, dir, b.URL()))
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	want := "the broker refused the subscription to the BIRTH certificates ($sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/+)"
	if exitCode(err) != 1 || !strings.Contains(out, want) {
		t.Errorf("err = %v; output lacks %q:\n%s", err, want, out)
	}
}
