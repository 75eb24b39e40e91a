package config

import (
	"strings"
	"testing"
)

// specExample is SPEC.md's example configuration, verbatim: tests outside
// the repository start the agent from files written this way.
const specExample = `site: plant-2                   # id of this plant/agent: [a-z0-9-]+; used in Odoo external ids and metrics
data_dir: /var/lib/plantedge    # holds the bbolt buffer
listen: 127.0.0.1:9464          # local HTTP: /metrics, /healthz, /readyz, status/flush API
buffer:
  max_bytes: 1GiB               # disk quota for the buffer
odoo:
  url: https://erp.example.com
  database: prod
  username: plantedge-bot       # JSON-RPC login (Odoo 17/18); JSON-2 needs only the key
  api_key_file: /etc/plantedge/odoo-api-key   # or env PLANTEDGE_ODOO_API_KEY; never inline in YAML
  protocol: auto                # auto | jsonrpc | json2
opcua:
  - name: line1
    endpoint: opc.tcp://10.1.2.3:4840
    security_policy: None       # None | Basic256Sha256 | Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss
    security_mode: None         # None | Sign | SignAndEncrypt
mqtt:
  - name: plant-broker
    url: tcp://10.1.2.10:1883   # tcp://, ssl://, ws://
    client_id: plantedge-plant2
machines:
  - id: press-07
    workcenter: WC-PRESS-07     # Odoo mrp.workcenter code
    good_count:
      opcua: { server: line1, node: "ns=2;s=Press07.GoodCount" }
      rollover: 65536           # optional: counter wraps to 0 after 65535
    scrap_count:
      mqtt: { broker: plant-broker, topic: plant2/press-07/counters, field: scrap }
    running:
      mqtt: { broker: plant-broker, topic: plant2/press-07/state, field: running }
    downtime_reason:
      mqtt: { broker: plant-broker, topic: plant2/press-07/state, field: reason }
      map: { JAM: Equipment Failure, SETUP: Setup and Adjustments }
`

// TestSpecExampleConfig: SPEC.md's example loads without a problem or a
// warning, and means what SPEC.md says of it.
func TestSpecExampleConfig(t *testing.T) {
	c, err := Parse("spec.yaml", []byte(specExample))
	if err != nil {
		t.Fatalf("SPEC.md's example does not load:\n%v", err)
	}
	for _, w := range c.Warnings {
		t.Errorf("SPEC.md's example warns: %s", w)
	}
	if c.Site != "plant-2" || c.DataDir != "/var/lib/plantedge" || c.Listen != "127.0.0.1:9464" || c.Buffer.MaxBytes != 1<<30 {
		t.Errorf("top level: site %q data_dir %q listen %q max_bytes %d", c.Site, c.DataDir, c.Listen, c.Buffer.MaxBytes)
	}
	if o := c.Odoo; o.URL != "https://erp.example.com" || o.Database != "prod" || o.Username != "plantedge-bot" ||
		o.APIKeyFile != "/etc/plantedge/odoo-api-key" || o.Protocol != "auto" {
		t.Errorf("odoo: %+v", o)
	}
	if len(c.OPCUA) != 1 || c.OPCUA[0].Name != "line1" || c.OPCUA[0].SecurityPolicy != "None" || c.OPCUA[0].SecurityMode != "None" {
		t.Errorf("opcua: %+v", c.OPCUA)
	}
	if len(c.MQTT) != 1 || c.MQTT[0].Name != "plant-broker" || c.MQTT[0].ClientID != "plantedge-plant2" {
		t.Errorf("mqtt: %+v", c.MQTT)
	}
	if len(c.Machines) != 1 {
		t.Fatalf("%d machines, want 1", len(c.Machines))
	}
	m := c.Machines[0]
	if m.ID != "press-07" || m.Workcenter != "WC-PRESS-07" {
		t.Errorf("machine %q workcenter %q", m.ID, m.Workcenter)
	}
	if g := m.GoodCount; g == nil || g.OPCUA == nil || g.OPCUA.Server != "line1" || g.OPCUA.Node != "ns=2;s=Press07.GoodCount" || g.Rollover != 65536 {
		t.Errorf("good_count: %+v", g)
	}
	if s := m.ScrapCount; s == nil || s.MQTT == nil || s.MQTT.Topic != "plant2/press-07/counters" || s.MQTT.Field != "scrap" {
		t.Errorf("scrap_count: %+v", s)
	}
	if r := m.Running; r == nil || r.MQTT == nil || r.MQTT.Topic != "plant2/press-07/state" || r.MQTT.Field != "running" {
		t.Errorf("running: %+v", r)
	}
	if d := m.DowntimeReason; d == nil || d.MQTT == nil || d.MQTT.Field != "reason" ||
		d.Map["JAM"] != "Equipment Failure" || d.Map["SETUP"] != "Setup and Adjustments" {
		t.Errorf("downtime_reason: %+v", d)
	}
}

// TestSpecEnumValues: every value SPEC.md lists for odoo.protocol,
// opcua security_policy/security_mode and the MQTT url schemes is taken as
// written; the connectors' own tests use them, but not through the file.
func TestSpecEnumValues(t *testing.T) {
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(specExample, old) {
			t.Fatalf("no %q in the example", old)
		}
		return strings.Replace(specExample, old, new, 1)
	}
	cases := map[string]string{}
	for _, p := range []string{"auto", "jsonrpc", "json2"} {
		cases["protocol "+p] = edit("protocol: auto ", "protocol: "+p+" ")
	}
	for _, p := range []string{"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"} {
		for _, m := range []string{"Sign", "SignAndEncrypt"} {
			cases[p+"/"+m] = strings.Replace(edit("security_policy: None ", "security_policy: "+p+" "), "security_mode: None ", "security_mode: "+m+" ", 1)
		}
	}
	// (mqtt:// and mqtts://, which paho takes too, are tcp:// and ssl://:
	// the OT audit saw them refused)
	for _, u := range []string{"tcp://10.1.2.10:1883", "ssl://10.1.2.10:8883", "ws://10.1.2.10:8080/mqtt", "mqtt://10.1.2.10:1883", "mqtts://10.1.2.10:8883"} {
		cases["mqtt "+u] = edit("url: tcp://10.1.2.10:1883 ", "url: "+u+" ")
	}
	for name, y := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := Parse("spec.yaml", []byte(y))
			if err != nil {
				t.Fatalf("refused:\n%v", err)
			}
			if p := c.Odoo.Protocol; !strings.Contains(y, "protocol: "+p+" ") {
				t.Errorf("protocol read as %q", p)
			}
			if o := c.OPCUA[0]; !strings.Contains(y, "security_policy: "+o.SecurityPolicy+" ") || !strings.Contains(y, "security_mode: "+o.SecurityMode+" ") {
				t.Errorf("security read as %s/%s", o.SecurityPolicy, o.SecurityMode)
			}
		})
	}
}
