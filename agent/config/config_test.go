package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// base is a valid configuration the bad-config cases edit.
const base = `site: plant-1
odoo:
  url: https://erp.example.com
  database: prod
  username: bot
  api_key_file: /etc/plantedge/odoo-api-key
opcua:
  - name: plc
    endpoint: opc.tcp://127.0.0.1:4840
mqtt:
  - name: broker
    url: tcp://127.0.0.1:1883
    client_id: pe-1
machines:
  - id: m1
    workcenter: WC1
    good_count:
      opcua: { server: plc, node: "ns=2;s=M1.Good" }
`

func TestExampleConfig(t *testing.T) {
	c, err := Load("../../packaging/plantedge.yaml")
	if err != nil {
		t.Fatalf("the shipped example must validate:\n%v", err)
	}
	if c.Site != "plant-2" || len(c.Machines) != 5 || len(c.OPCUA) != 2 || len(c.MQTT) != 2 {
		t.Fatalf("unexpected shape: site %q, %d machines, %d opcua, %d mqtt", c.Site, len(c.Machines), len(c.OPCUA), len(c.MQTT))
	}
	// press-09 takes its downtime_reason from the x-press anchor.
	p9 := c.Machines[2]
	if p9.ID != "press-09" || p9.DowntimeReason == nil || p9.DowntimeReason.Map["42"] != "Material Availability" || p9.DowntimeReason.Default != "Equipment Failure" {
		t.Errorf("press-09 did not inherit the anchored reason: %+v", p9.DowntimeReason)
	}
	if p9.Running == nil || p9.Running.MQTT == nil || p9.Running.MQTT.Broker != "cloud-broker" {
		t.Errorf("press-09 running: %+v", p9.Running)
	}
	// lathe-02: a state word says running and names the stops' loss.
	if l := c.Machines[3]; l.Running == nil || len(l.Running.RunningValues) != 1 || l.Running.RunningValues[0] != "1" || l.DowntimeReason.Map["2"] != "Equipment Failure" {
		t.Errorf("lathe-02: %+v %+v", l.Running, l.DowntimeReason)
	}
	// mill-03: Sparkplug B metrics, named with a slash and a space.
	if m := c.Machines[4]; m.GoodCount == nil || !m.GoodCount.MQTT.Sparkplug() || m.GoodCount.MQTT.Field != "Counters/Good Parts" {
		t.Errorf("mill-03: %+v", m.GoodCount)
	}
	for _, w := range c.Warnings {
		t.Errorf("the shipped example must not warn: %s", w)
	}
	if got := c.BufferPath(); got != "/var/lib/plantedge/buffer.db" {
		t.Errorf("BufferPath = %q", got)
	}
}

// TestExampleCoversEveryKey keeps packaging/plantedge.yaml complete: every
// yaml key of every struct must appear in it.
func TestExampleCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../packaging/plantedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, typ := range []any{Config{}, Log{}, Buffer{}, Odoo{}, Forward{}, OPCUAServer{}, MQTTBroker{}, Machine{}, SourceRef{}, OPCUARef{}, MQTTRef{}, Signal{}, Counter{}, Reason{}} {
		_, names := structFieldsOf(typ)
		for _, n := range names {
			if !strings.Contains(text, n+":") {
				t.Errorf("%T key %q missing from packaging/plantedge.yaml", typ, n)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("base.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/plantedge" || c.Listen != "127.0.0.1:9464" || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("top-level defaults: %+v", c)
	}
	if c.Buffer.MaxBytes != 1<<30 || c.Buffer.CommitWindow.D() != 10*time.Millisecond {
		t.Errorf("buffer defaults: %+v", c.Buffer)
	}
	if c.Odoo.Protocol != "auto" || c.Odoo.Timeout.D() != 30*time.Second || c.Odoo.DefaultLoss != "Equipment Failure" || c.Odoo.InsecureSkipVerify {
		t.Errorf("odoo defaults: %+v", c.Odoo)
	}
	if c.Forward.Rate != 5 || c.Forward.BackoffMax.D() != time.Minute || c.Forward.Interval.D() != 2*time.Second || c.Forward.AuthBackoff.D() != time.Minute {
		t.Errorf("forward defaults: %+v", c.Forward)
	}
	o := c.OPCUA[0]
	if o.SecurityPolicy != "None" || o.SecurityMode != "None" || o.Mode != "subscribe" || o.PublishingInterval.D() != time.Second ||
		o.SamplingInterval.D() != 500*time.Millisecond || o.QueueSize != 10 || o.PollInterval.D() != time.Second ||
		o.HeartbeatTimeout.D() != 10*time.Second || o.BackoffMax.D() != 30*time.Second {
		t.Errorf("opcua defaults: %+v", o)
	}
	if m := c.MQTT[0]; m.KeepAlive.D() != 30*time.Second || m.BackoffMax.D() != 30*time.Second {
		t.Errorf("mqtt defaults: %+v", m)
	}
	// A secure policy without a mode: SignAndEncrypt, as browse takes it.
	secure := strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    security_policy: Basic256Sha256\n", 1)
	if c, err := Parse("secure.yaml", []byte(secure)); err != nil || c.OPCUA[0].SecurityMode != "SignAndEncrypt" {
		t.Errorf("security_mode with policy Basic256Sha256 and no mode: %v", err)
	}
	if c.Path != "base.yaml" {
		t.Errorf("Path = %q", c.Path)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	c, err := Load("../../testdata/config/presses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Machines) != 3 {
		t.Fatalf("%d machines, want 3", len(c.Machines))
	}
	for i, want := range []struct {
		id, wc, topic string
		block         bool
	}{
		{"press-01", "WC-PRESS-01", "plant3/press-01", true},
		{"press-02", "WC-PRESS-02", "plant3/press-01", true},
		{"press-03", "WC-PRESS-03", "plant3/press-03", false},
	} {
		m := c.Machines[i]
		if m.ID != want.id || m.Workcenter != want.wc || m.BlockWorkcenter != want.block {
			t.Errorf("machine %d: %s %s block=%v, want %+v", i, m.ID, m.Workcenter, m.BlockWorkcenter, want)
		}
		if m.GoodCount == nil || m.GoodCount.MQTT == nil || m.GoodCount.MQTT.Topic != want.topic {
			t.Errorf("machine %d good_count: %+v", i, m.GoodCount)
			continue
		}
		if m.Running == nil || m.DowntimeReason == nil || m.DowntimeReason.Map["JAM"] != "Equipment Failure" {
			t.Errorf("machine %d did not inherit running/downtime_reason", i)
		}
	}
	// press-03 overrides good_count entirely (merge is shallow): no rollover.
	if c.Machines[2].GoodCount.Rollover != 0 || c.Machines[1].GoodCount.Rollover != 65536 {
		t.Errorf("rollover: press-02 %d, press-03 %d", c.Machines[1].GoodCount.Rollover, c.Machines[2].GoodCount.Rollover)
	}
}

// TestBadConfigs lists bad configurations and the exact messages each
// produces (cf. nats-server config_check_test.go).
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "empty file",
			yaml: "",
			want: []string{
				"bad.yaml:1:1: site: required (the id of this plant: lowercase letters, digits and '-', e.g. plant-2)",
				"bad.yaml:1:1: odoo.url: required (the base URL of Odoo, e.g. https://erp.example.com)",
				"bad.yaml:1:1: odoo.database: required (the Odoo database name)",
				"bad.yaml:1:1: machines: at least one machine is required (list the machines under machines:, each with id, workcenter and a signal)",
			},
		},
		{
			name: "not a mapping (a wrong file)",
			yaml: "just a string\n",
			want: []string{`bad.yaml:1:1: expected a mapping, got a string "just a string" (a configuration is key: value pairs at the top level: site:, odoo:, opcua: or mqtt:, machines:)`},
		},
		{
			name: "UTF-16 file",
			yaml: "\xff\xfes\x00i\x00t\x00e\x00:\x00 \x00x\x00\n\x00",
			want: []string{`bad.yaml:1:1: a UTF-16 text file (a Windows editor's "Unicode"), not UTF-8 (save the configuration as UTF-8 text)`},
		},
		{
			name: "binary file",
			yaml: "\x7fELF\x02\x01\x01\x00\x00\x00\nsite: x\n",
			want: []string{"bad.yaml:1:8: not a YAML text file (it holds NUL bytes) (is this the right file? save the configuration as UTF-8 text)"},
		},
		{
			name: "syntax error",
			yaml: "site: [plant\n",
			want: []string{"bad.yaml:1:7: yaml: sequence end token ']' not found (fix the YAML syntax: check the indentation of this line and the next against the lines above, and the quotes and brackets)"},
		},
		{
			name: "tab indentation",
			yaml: "site: x\nodoo:\n\turl: https://erp.example.com\n",
			want: []string{"bad.yaml:3:1: yaml: found character '\t' that cannot start any token (fix the YAML syntax; indent with spaces, not tabs)"},
		},
		{
			// A tab in a comment is not the cause of an error lines
			// below (the val54 probe: "indent with spaces, not tabs").
			name: "tab elsewhere",
			yaml: "site: x\t# plant\nodoo:\n  url: https://erp.example.com\n   database: y\n",
			want: []string{"bad.yaml:3:8: yaml: mapping value is not allowed in this context (fix the YAML syntax: check the indentation of this line and the next against the lines above, and the quotes and brackets)"},
		},
		{
			name: "tab after a list's dash",
			yaml: "site: x\nmachines:\n  -\tid: m1\n    workcenter: W\n",
			want: []string{"bad.yaml:3:6: yaml: tab character cannot use as a map key directly (fix the YAML syntax; indent with spaces, not tabs)"},
		},
		{
			// A spreadsheet's or a web page's non-breaking space looks
			// like a space: shown where it is (the val54 probe: the
			// caret was at the key, the hint "put a space after the
			// colon" where a space seemed to be).
			name: "non-breaking space after a colon",
			yaml: "site:\u00a0x\nodoo:\n  url: https://erp.example.com\n",
			want: []string{"bad.yaml:1:6: yaml: unexpected key name (fix the YAML syntax: here is a non-breaking space (U+00A0), which YAML takes for text, not a space: retype it as a plain space (a paste from a spreadsheet or a web page?))"},
		},
		{
			name: "non-breaking spaces indenting a line above the error",
			yaml: "site: x\nodoo:\n  url: https://erp.example.com\nmachines:\n  - id: m1\n    good_count:\n\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0opcua:\n        server: plc\n  - id: m2\n",
			want: []string{"bad.yaml:9:3: yaml: value is not allowed in this context (fix the YAML syntax: line 7 column 1 holds a non-breaking space (U+00A0), which YAML takes for text, not a space: retype it as a plain space (a paste from a spreadsheet or a web page?))"},
		},
		{
			// A block pasted two spaces short under a list (the val54
			// probe: only "check the indentation").
			name: "a key indented as a list's dash",
			yaml: base + "  running:\n    opcua: { server: plc, node: \"ns=2;s=M1.Run\" }\n",
			want: []string{"bad.yaml:19:3: yaml: value is not allowed in this context (this key is indented as the \"- \" that begins the list entry at line 15: indent it to column 5 to make it that entry's, or begin a new entry with \"- \")"},
		},
		{
			name: "full-width colon",
			yaml: "site: x\nodoo\uff1a\n  url: https://erp.example.com\n",
			want: []string{"bad.yaml:2:5: yaml: unexpected key name (fix the YAML syntax: here is a full-width colon (U+FF1A), which YAML does not take for a key's colon: type a plain colon (a paste from a spreadsheet or a web page?))"},
		},
		{
			name: "unknown key with suggestion",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      rolover: 10\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:7: machines[0].good_count.rolover: unknown key (did you mean "rollover"?)`},
		},
		{
			name: "unknown top-level key",
			yaml: base + "colour: blue\n",
			want: []string{`bad.yaml:19:1: colour: unknown key (known keys: buffer, data_dir, forward, listen, log, machines, mqtt, odoo, opcua, site)`},
		},
		{
			name: "inline api key",
			yaml: strings.Replace(base, "  username: bot\n", "  username: bot\n  api_key: abc123\n", 1),
			want: []string{"bad.yaml:6:3: odoo.api_key: inline secret not allowed (put the key in a file named by api_key_file (mode 0600), or set PLANTEDGE_ODOO_API_KEY, or use systemd LoadCredential=odoo-api-key)"},
		},
		{
			name: "inline mqtt password",
			yaml: strings.Replace(base, "    client_id: pe-1\n", "    client_id: pe-1\n    password: hunter2\n", 1),
			want: []string{"bad.yaml:14:5: mqtt[0].password: inline secret not allowed (put the password in a file named by password_file (mode 0640, group plantedge), or name the environment variable that holds it in password_env)"},
		},
		{
			// Each section is told of the key it has: Odoo's takes no
			// password_file (the audit61 probe: an inline odoo.password
			// was told to use one, then refused as an unknown key).
			name: "inline secrets where a section has no such file key",
			yaml: strings.Replace(strings.Replace(strings.Replace(base, "  username: bot\n", "  username: bot\n  password: hunter2\n", 1),
				"    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    token: abc123\n", 1),
				"  - id: m1\n", "  - id: m1\n    password: hunter2\n", 1),
			want: []string{
				"bad.yaml:6:3: odoo.password: inline secret not allowed (the agent logs in with the bot user's API key, never a password: put the key in a file named by api_key_file (mode 0600), or set PLANTEDGE_ODOO_API_KEY, or use systemd LoadCredential=odoo-api-key)",
				"bad.yaml:11:5: opcua[0].token: inline secret not allowed (put the password in a file named by password_file (mode 0640, group plantedge), or name the environment variable that holds it in password_env)",
				"bad.yaml:18:5: machines[0].password: inline secret not allowed (secrets are never written inline: an MQTT broker's or OPC UA server's password goes in its password_file or password_env, Odoo's API key in odoo.api_key_file)",
			},
		},
		{
			// Other Odoo clients' names for the odoo: keys (the audit61
			// probe: db: and user: got only the list of known keys).
			name: "odoo keys by other clients' names",
			yaml: strings.Replace(strings.Replace(strings.Replace(base, "  database: prod\n", "  db: prod\n", 1),
				"  username: bot\n", "  user: bot\n  api_key_env: ODOO_KEY\n", 1), "  url: ", "  host: ", 1),
			want: []string{
				`bad.yaml:3:3: odoo.host: unknown key (did you mean "url"?)`,
				"bad.yaml:3:3: odoo.url: required (the base URL of Odoo, e.g. https://erp.example.com)",
				"bad.yaml:3:3: odoo.database: required (the Odoo database name)",
				`bad.yaml:4:3: odoo.db: unknown key (did you mean "database"?)`,
				`bad.yaml:5:3: odoo.user: unknown key (did you mean "username"?)`,
				"bad.yaml:6:3: odoo.api_key_env: unknown key (no key names the API key's environment variable: the agent reads PLANTEDGE_ODOO_API_KEY, or the file api_key_file names)",
			},
		},
		{
			name: "bad site",
			yaml: strings.Replace(base, "site: plant-1", "site: Plant_1", 1),
			want: []string{"bad.yaml:1:7: site: invalid site \"Plant_1\" (use lowercase letters, digits and '-' only, e.g. plant-2)"},
		},
		{
			// A dash from a word processor looks like '-' (the val54
			// probe): named.
			name: "typographic dash in a machine id and a source name",
			yaml: strings.Replace(strings.Replace(base, "  - id: m1", "  - id: press\u20131", 1), "  - name: broker", "  - name: broker\u00a0", 1),
			want: []string{
				"bad.yaml:11:11: mqtt[0].name: invalid name \"broker\\u00a0\": it holds U+00A0, a space that is not ASCII (use ASCII letters (a-z, A-Z), digits, '.', '_' and '-' only, at most 64)",
				"bad.yaml:15:9: machines[0].id: invalid machine id \"press\u20131\": its '\u2013' (U+2013) is a typographic dash, not '-' (use ASCII letters (a-z, A-Z), digits, '.', '_' and '-' only (it goes into Odoo external ids and metric labels))",
			},
		},
		{
			name: "bad duration and size",
			yaml: base + "buffer:\n  max_bytes: 1GB2\n  commit_window: 20 ms\n",
			want: []string{
				`bad.yaml:20:14: buffer.max_bytes: invalid size unit "GB2" in "1GB2" (write it like "512MiB", "1GiB" or a number of bytes)`,
				`bad.yaml:21:18: buffer.commit_window: invalid duration "20 ms" (write it like "500ms", "10s" or "5m")`,
			},
		},
		{
			name: "limits",
			yaml: base + "buffer:\n  max_bytes: 1000\n  commit_window: 50ms\nforward:\n  auth_backoff: 10s\n  rate: 0\n",
			want: []string{
				"bad.yaml:20:14: buffer.max_bytes: 1000 is below the minimum of 1MiB",
				"bad.yaml:21:18: buffer.commit_window: 50ms is above the maximum of 20ms (a longer window delays every MQTT ack)",
				"bad.yaml:23:17: forward.auth_backoff: 10s is below the minimum of 1m0s (retrying a refused login sooner can lock the bot user out)",
				"bad.yaml:24:9: forward.rate: 0 is out of range (Odoo HTTP requests per second, greater than 0 and at most 1000)",
			},
		},
		{
			name: "wrong types",
			yaml: base + "log: debug\nodoo:\n  insecure_skip_verify: yes\n",
			want: []string{
				`bad.yaml:19:6: log: expected a mapping, got a string "debug" (write key: value pairs indented under it)`,
				`bad.yaml:20:1: odoo: duplicate key (already set at line 2)`,
			},
		},
		{
			name: "wrong scalar type",
			yaml: strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    queue_size: -1\n    mode: [poll]\n", 1),
			want: []string{
				`bad.yaml:10:17: opcua[0].queue_size: expected a whole number from 0 to 4294967295, got a number "-1"`,
				`bad.yaml:11:11: opcua[0].mode: expected a string, got a list`,
			},
		},
		{
			// What the connectors refuse at start, which validate passed
			// while a reload took the source down (the yaml probe).
			name: "settings the connectors refuse",
			yaml: strings.Replace(strings.Replace(strings.Replace(base,
				"    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: OPC.TCP://127.0.0.1:4840\n    publishing_interval: 8s\n    backoff_max: 100ms\n", 1),
				"    client_id: pe-1\n", "    client_id: pe-1\n    keep_alive: 20h\n    backoff_max: 100ms\n", 1),
				`node: "ns=2;s=M1.Good"`, `node: "ns=2;b=Press2"`, 1),
			want: []string{
				`bad.yaml:9:15: opcua[0].endpoint: invalid endpoint "OPC.TCP://127.0.0.1:4840" (write the scheme in lower case: opc.tcp://)`,
				// said at the key written, not at the heartbeat_timeout the file lacks (the spec audit)
				`bad.yaml:10:26: opcua[0].publishing_interval: 8s needs a heartbeat_timeout of at least twice it; heartbeat_timeout is 10s, its default (set heartbeat_timeout to a few publishing intervals, e.g. 24s)`,
				`bad.yaml:11:18: opcua[0].backoff_max: 100ms is below 500ms, the first reconnect wait (e.g. 1m)`,
				`bad.yaml:16:17: mqtt[0].keep_alive: 20h0m0s is above 65535s, the most MQTT can carry (e.g. 30s)`,
				`bad.yaml:17:18: mqtt[0].backoff_max: 100ms is below 500ms, the first reconnect wait (e.g. 1m)`,
				`bad.yaml:22:35: machines[0].good_count.opcua.node: invalid node id "ns=2;b=Press2": a b= (opaque) identifier is base64 (padded to a multiple of 4 with =) (use plantedge browse to see the server's node ids)`,
			},
		},
		{
			// Not quoted: goccy reads 1e-3 as text (the yaml probe was
			// told to remove quotes it had not).
			name: "exponent without a dot",
			yaml: strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    queue_size: 1e3\n", 1),
			want: []string{
				`bad.yaml:10:17: opcua[0].queue_size: expected a whole number from 0 to 4294967295, got a string "1e3" (YAML reads this form as text: write 1000)`,
			},
		},
		{
			name: "number in quotes",
			yaml: strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    queue_size: \"10\"\n", 1),
			want: []string{
				`bad.yaml:10:17: opcua[0].queue_size: expected a whole number from 0 to 4294967295, got a string "10" (remove the quotes: in quotes YAML reads it as text)`,
			},
		},
		{
			name: "duplicate machine id and undefined sources",
			yaml: base + `  - id: m1
    workcenter: WC2
    running:
      mqtt: { broker: brokr, topic: a/b }
    scrap_count:
      opcua: { server: plc2, node: "ns=2;s=X" }
`,
			want: []string{
				`bad.yaml:19:9: machines[1].id: duplicate machine id "m1" (also used by machines[0])`,
				`bad.yaml:22:23: machines[1].running.mqtt.broker: unknown MQTT broker "brokr" (defined: broker)`,
				`bad.yaml:24:24: machines[1].scrap_count.opcua.server: unknown OPC UA server "plc2" (defined: plc)`,
			},
		},
		{
			name: "node id and topic filter",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "Press07.Good" }
    running:
      mqtt: { broker: broker, topic: "plant/+/state", field: "a..b" }
    scrap_count:
      opcua: { server: plc, node: "ns=2; s=Press07.Scrap" }
  - id: m3
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "NS=2;S=Press08.Good" }
`,
			want: []string{
				`bad.yaml:22:35: machines[1].good_count.opcua.node: invalid node id "Press07.Good" (write ns=<index>;s=<name> or ns=<index>;i=<number>, e.g. "ns=2;s=Press07.GoodCount" (use plantedge browse))`,
				`bad.yaml:24:38: machines[1].running.mqtt.topic: wildcard in topic "plant/+/state" (name the exact topic of this machine; wildcards are not allowed here)`,
				`bad.yaml:24:62: machines[1].running.mqtt.field: invalid field path "a..b" (a dot path into the JSON payload, e.g. counters.good)`,
				`bad.yaml:26:35: machines[1].scrap_count.opcua.node: invalid node id "ns=2; s=Press07.Scrap" (did you mean "ns=2;s=Press07.Scrap"? no white space around ; and =, and ns=, nsu=, s=, i=, g=, b= in lower case (use plantedge browse))`,
				`bad.yaml:30:35: machines[2].good_count.opcua.node: invalid node id "NS=2;S=Press08.Good" (did you mean "ns=2;s=Press08.Good"? no white space around ; and =, and ns=, nsu=, s=, i=, g=, b= in lower case (use plantedge browse))`,
			},
		},
		{
			// index reads one element of an OPC UA array node: a whole
			// number from 0, and only beside an OPC UA node.
			name: "array index",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=Counts", index: -1 }
    scrap_count:
      opcua: { server: plc, node: "ns=2;s=Other", index: 1.5 }
    running:
      mqtt: { broker: broker, topic: t, index: 2 }
  - id: m3
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "ns=2;s=Counts", index: 3 }
    scrap_count:
      opcua: { server: plc, node: "ns=2;s=Counts", index: 3 }
`,
			want: []string{
				`bad.yaml:22:59: machines[1].good_count.opcua.index: expected a whole number from 0 to 4294967295, got a number "-1"`,
				`bad.yaml:24:58: machines[1].scrap_count.opcua.index: expected a whole number from 0 to 4294967295, got a number "1.5"`,
				`bad.yaml:26:41: machines[1].running.mqtt.index: unknown key (known keys: broker, field, format, timestamp_field, topic)`,
				`bad.yaml:32:7: machines[2].scrap_count: reads the same value as good_count (each signal needs its own node, topic or field)`,
			},
		},
		{
			name: "sparkplug_b references",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      mqtt: { broker: broker, format: sparkplug_b, topic: spBv1.0/plant/DBIRTH/edge1/press1, field: Counters/Good }
    scrap_count:
      mqtt: { broker: broker, format: sparkplug_b, topic: plant/press1/scrap, timestamp_field: ts }
    running:
      mqtt: { broker: broker, format: sparkplug, topic: spBv1.0/plant/DDATA/edge1/press1, field: Run }
  - id: m3
    workcenter: WC3
    good_count:
      mqtt: { broker: broker, format: sparkplug_b, topic: spBv1.0/plant/NDATA/edge1, field: Good Parts }
`,
			want: []string{
				`bad.yaml:22:59: machines[1].good_count.mqtt.topic: topic "spBv1.0/plant/DBIRTH/edge1/press1" is not a Sparkplug B DATA topic (write spBv1.0/plant/DDATA/edge1/press1: the BIRTH and DEATH topics are read with it)`,
				`bad.yaml:24:13: machines[1].scrap_count.mqtt.field: no metric name (with format: sparkplug_b, field is the metric's name as the edge node publishes it, e.g. field: Counters/Good)`,
				`bad.yaml:24:59: machines[1].scrap_count.mqtt.topic: topic "plant/press1/scrap" is not a Sparkplug B topic (write the DATA topic: spBv1.0/<group>/DDATA/<edge node>/<device>, or spBv1.0/<group>/NDATA/<edge node> for a metric of the edge node)`,
				`bad.yaml:24:96: machines[1].scrap_count.mqtt.timestamp_field: not used with format: sparkplug_b (remove it: the metric's own timestamp (else the payload's) is the source time)`,
				`bad.yaml:26:39: machines[1].running.mqtt.format: unknown format "sparkplug" (leave it out for JSON or a bare value, or write format: sparkplug_b)`,
			},
		},
		{
			name: "node id numbers out of range",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=1;i=99999999999" }
    running:
      opcua: { server: plc, node: "ns=65536;s=P1.Run" }
    scrap_count:
      opcua: { server: plc, node: "ns=65535;i=4294967295" }
  - id: m3
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "nsu=urn:plc;i=4294967296" }
`,
			want: []string{
				`bad.yaml:22:35: machines[1].good_count.opcua.node: invalid node id "ns=1;i=99999999999": a numeric identifier is at most 4294967295 (use plantedge browse to see the server's node ids)`,
				`bad.yaml:24:35: machines[1].running.opcua.node: invalid node id "ns=65536;s=P1.Run": the namespace index is above 65535 (use plantedge browse to see the server's node ids)`,
				`bad.yaml:30:35: machines[2].good_count.opcua.node: invalid node id "nsu=urn:plc;i=4294967296": a numeric identifier is at most 4294967295 (use plantedge browse to see the server's node ids)`,
			},
		},
		{
			name: "credentials in the OPC UA endpoint",
			yaml: strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://op:s3cret@127.0.0.1:4840\n", 1),
			want: []string{
				"bad.yaml:9:15: opcua[0].endpoint: credentials in the URL (use username and password_file)",
			},
		},
		{
			name: "machine without signals or source",
			yaml: base + "  - id: m2\n    workcenter: WC2\n  - id: m3\n    workcenter: WC3\n    running: {}\n",
			want: []string{
				"bad.yaml:19:5: machines[1]: machine has no signal (add at least one of good_count, scrap_count, running, downtime_reason)",
				"bad.yaml:23:14: machines[2].running: no source (add opcua: {server, node} or mqtt: {broker, topic})",
			},
		},
		{
			name: "both sources and same value twice",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;i=5" }
      mqtt: { broker: broker, topic: t }
    scrap_count:
      mqtt: { broker: broker, topic: t, field: n }
    running:
      mqtt: { broker: broker, topic: t, field: n }
`,
			want: []string{
				"bad.yaml:22:7: machines[1].good_count: both opcua and mqtt set (a signal reads from exactly one source)",
				"bad.yaml:27:7: machines[1].running: reads the same value as scrap_count (each signal needs its own node, topic or field)",
			},
		},
		{
			name: "security policy and mode",
			yaml: strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: http://127.0.0.1:4840\n    security_policy: Basic256Sha256\n    security_mode: None\n    server_thumbprint: abc\n", 1),
			want: []string{
				`bad.yaml:9:15: opcua[0].endpoint: invalid endpoint "http://127.0.0.1:4840" (write opc.tcp://host:port, e.g. opc.tcp://10.1.2.3:4840)`,
				"bad.yaml:11:20: opcua[0].security_mode: security_mode None does not fit security_policy Basic256Sha256 (policy None goes with mode None; any other policy needs Sign or SignAndEncrypt)",
				"bad.yaml:12:24: opcua[0].server_thumbprint: invalid thumbprint (40 hex digits: the SHA-1 of the server certificate)",
			},
		},
		{
			name: "password_env",
			yaml: strings.Replace(strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n",
				"    endpoint: opc.tcp://127.0.0.1:4840\n    password_env: hunter2!secret\n", 1),
				"    client_id: pe-1\n", "    client_id: pe-1\n    username: u\n    password_env: MQTT_PW\n    password_file: /etc/x\n", 1),
			want: []string{
				"bad.yaml:8:5: opcua[0].username: required with password_env",
				"bad.yaml:10:19: opcua[0].password_env: not the name of an environment variable (value not shown) (name the variable in upper case letters, digits and _, e.g. password_env: MQTT_PASSWORD, and set it for the agent in a root-only file (systemctl edit plantedge: [Service] EnvironmentFile=/etc/plantedge/secrets.env); the password itself never goes in this file)",
				"bad.yaml:16:19: mqtt[0].password_env: password_file and password_env both set (keep one: a file holding the password, or the name of an environment variable holding it)",
			},
		},
		{
			name: "mqtt url, client id and tls",
			yaml: strings.Replace(base, "    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "    url: http://127.0.0.1\n    ca_file: /etc/ca.pem\n", 1),
			want: []string{
				`bad.yaml:11:5: mqtt[0].client_id: required (a stable id for this agent, e.g. plantedge-plant2; it keys the persistent session)`,
				`bad.yaml:12:10: mqtt[0].url: unsupported scheme "http" (one of: tcp:// (or mqtt://), ssl:// (or tls://, mqtts://), ws://, wss://)`,
			},
		},
		{
			name: "odoo",
			yaml: strings.Replace(strings.Replace(base, "https://erp.example.com", "ftp://erp", 1), "  username: bot\n", "  protocol: jsonrpc\n", 1),
			want: []string{
				`bad.yaml:3:3: odoo.username: required with protocol jsonrpc (the login of the Odoo bot user, e.g. plantedge-bot)`,
				`bad.yaml:3:8: odoo.url: unsupported scheme "ftp" (use https:// (or http:// on a trusted network))`,
			},
		},
		{
			name: "ports out of range",
			yaml: strings.Replace(strings.Replace(base, "https://erp.example.com", "https://erp.example.com:70000", 1),
				"tcp://127.0.0.1:1883", "tcp://127.0.0.1:99999", 1),
			want: []string{
				`bad.yaml:3:8: odoo.url: invalid port "70000" (a port is 1 to 65535; https:// without one is 443)`,
				`bad.yaml:12:10: mqtt[0].url: invalid port "99999" (a port is 1 to 65535, e.g. tcp://10.1.2.10:1883)`,
			},
		},
		{
			name: "odoo request limit below the timeout",
			yaml: strings.Replace(base, "  username: bot\n", "  username: bot\n  timeout: 2m\n  request_limit: 90s\n", 1),
			want: []string{
				`bad.yaml:7:18: odoo.request_limit: 1m30s is shorter than odoo.timeout 2m0s (request_limit is Odoo's limit_time_real (120s unless its admin changed it): set it to that, and odoo.timeout to at most 1m30s)`,
			},
		},
		{
			name: "topic read bare and with a field",
			yaml: base + `  - id: m2
    workcenter: WC2
    good_count:
      mqtt: { broker: broker, topic: t }
    running:
      mqtt: { broker: broker, topic: t, field: run }
    scrap_count:
      mqtt: { broker: broker, topic: u, field: n }
  - id: m3
    workcenter: WC3
    scrap_count:
      mqtt: { broker: broker, topic: s, field: n }
      rollover: 1
`,
			want: []string{
				"bad.yaml:22:13: machines[1].good_count.mqtt.field: topic \"t\" is read as a bare value here but as JSON with a field by machines[1].running.mqtt (give this signal a field: the path of its value in the JSON payload (is field misspelt, or left out?))",
				"bad.yaml:31:17: machines[2].scrap_count.rollover: must be 0 (no wrap) or at least 2 (the counter's modulus, e.g. 65536 for a 16-bit counter)",
			},
		},
		{
			name: "unknown alias",
			yaml: base + "  - <<: *nope\n    id: m2\n",
			want: []string{
				"bad.yaml:19:5: machines[1].workcenter: required (the code of the machine's Odoo work center)",
				"bad.yaml:19:9: machines[1]: unknown alias *nope (define the anchor &nope before using it)",
			},
		},
		{
			name: "anchor merging itself",
			yaml: base + "  - &a {<<: *a, id: m2, workcenter: w, running: {mqtt: {broker: broker, topic: t}}}\n",
			want: []string{"bad.yaml:19:9: machines[1]: merge keys nest too deep or refer to themselves, via *a at line 19 (an anchor cannot merge itself)"},
		},
		{
			name: "min_stop with block_workcenter",
			yaml: base + "    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n    block_workcenter: true\n    min_stop: 5s\n",
			want: []string{"bad.yaml:21:15: machines[0].min_stop: cannot be combined with block_workcenter (block_workcenter opens the downtime line at the stop, before its length is known; use one or the other)"},
		},
		{
			name: "quiet_after not a duration",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      quiet_after: soon\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:20: machines[0].good_count.quiet_after: invalid duration "soon" (write it like "45m" or "2h", or off)`},
		},
		{
			// true says nothing of how long: refused, with the way to
			// write it (false is off: TestQuietAfter).
			name: "quiet_after true",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      quiet_after: true\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:20: machines[0].good_count.quiet_after: expected a duration or off, got true (write it like "45m" or "2h", or off)`},
		},
		{
			// An OT engineer's minutes without the unit: said so, not
			// "invalid" alone (operator review).
			name: "quiet_after without a unit",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      quiet_after: 45\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:20: machines[0].good_count.quiet_after: duration "45" has no unit (write it like "45m" or "2h", or off)`},
		},
		{
			name: "quiet_after on scrap_count",
			yaml: base + "    scrap_count:\n      opcua: { server: plc, node: \"ns=2;s=M1.Scrap\" }\n      quiet_after: 45m\n",
			want: []string{`bad.yaml:21:20: machines[0].scrap_count.quiet_after: only good_count has it (status notes a good_count that brings nothing while the machine runs; scrap comes seldom anyway: move it under good_count, or remove it)`},
		},
		{
			name: "quiet_after misplaced on the machine",
			yaml: base + "    quiet_after: 45m\n",
			want: []string{`bad.yaml:19:5: machines[0].quiet_after: unknown key (check its indentation: it belongs under good_count:, beside its opcua: or mqtt:)`},
		},
		{
			name: "negative min_stop",
			yaml: base + "    min_stop: -5s\n",
			want: []string{`bad.yaml:19:15: machines[0].min_stop: negative duration "-5s" (write it like "500ms", "10s" or "5m")`},
		},
		{
			name: "a leading zero (octal in YAML)",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      rollover: 065536\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:17: machines[0].good_count.rollover: 065536 has a leading zero, which would read as an octal number (27486 as written here) (write it without the leading zero, e.g. 65536)`},
		},
		{
			name: "a counter's factor of 0, negative or beyond reason",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      factor: 0\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:15: machines[0].good_count.factor: must be above 0 and at most 10000 (the units one step of the counter makes: 4 for a 4-cavity tool counting strokes, 0.001 for a counter in grams and an order in kg; leave it out for 1)`},
		},
		{
			name: "a counter's factor not a number",
			yaml: strings.Replace(base, "      opcua: { server: plc", "      factor: four\n      opcua: { server: plc", 1),
			want: []string{`bad.yaml:18:15: machines[0].good_count.factor: expected a number, got a string "four"`},
		},
		{
			name: "the same client_id twice on one broker",
			yaml: strings.Replace(base, "machines:\n", "  - name: broker2\n    url: tcp://localhost:1883/\n    client_id: pe-1\nmachines:\n", 1),
			want: []string{`bad.yaml:16:16: mqtt[1].client_id: client_id "pe-1" is also that of "broker", which connects to the same broker: the two connections throw each other off, and messages are lost (give each entry its own client_id, or map all its topics through one entry)`},
		},
		{
			name: "two documents",
			yaml: base + "---\nsite: x\n",
			want: []string{"bad.yaml:20:1: more than one YAML document (keep the whole configuration in one document; remove the second ---)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error = %v (%T), want *Error", err, err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if err.Error() != strings.Join(got, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

// TestEveryProblemAtOnce checks that one run reports decode and validation
// problems together, sorted by position.
func TestEveryProblemAtOnce(t *testing.T) {
	y := strings.Replace(strings.Replace(base, "site: plant-1", "site: Plant 1", 1), "workcenter: WC1", "workcentre: WC1", 1) +
		"listen: nowhere\n"
	_, err := Parse("f.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		`f.yaml:1:7: site: invalid site "Plant 1" (use lowercase letters, digits and '-' only, e.g. plant-2)`,
		`f.yaml:15:5: machines[0].workcenter: required (the code of the machine's Odoo work center)`,
		`f.yaml:16:5: machines[0].workcentre: unknown key (did you mean "workcenter"?)`,
		`f.yaml:19:9: listen: invalid listen address "nowhere" (use host:port (e.g. 127.0.0.1:9464) or unix:/path)`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// A Sparkplug B topic read as JSON: every message would be malformed.
func TestSparkplugTopicWithoutFormatWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", "    running: { mqtt: { broker: broker, topic: spBv1.0/g/DDATA/e/d, field: Run } }\n    good_count:\n", 1)
	wantWarnings(t, y,
		`w.yaml:17:47: machines[0].running.mqtt.topic: topic "spBv1.0/g/DDATA/e/d" is a Sparkplug B topic, read without format: sparkplug_b (add format: sparkplug_b, with field the metric's name)`)
}

func TestWarnings(t *testing.T) {
	y := strings.Replace(base, "  username: bot\n", "  username: bot\n  insecure_skip_verify: true\n", 1)
	wantWarnings(t, y,
		"w.yaml:6:25: odoo.insecure_skip_verify: TLS CERTIFICATE VERIFICATION IS OFF for Odoo: anyone on the path can read the API key (use ca_file with your CA instead)",
		`w.yaml:12:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`)
}

// machines: misspelt (machnes:) leaves no machine: that is the problem,
// said with the typo's line; every source "not used by any machine" beside
// it is noise (the technician's run of validate: one warning per source).
func TestNoMachinesNoUnusedSourceWarnings(t *testing.T) {
	_, err := Parse("f.yaml", []byte(strings.Replace(base, "machines:\n", "machnes:\n", 1)))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "machines: at least one machine is required") {
		t.Errorf("no machines' problem:\n%v", err)
	}
	for _, w := range ce.Warnings {
		if strings.Contains(w.String(), "not used by any machine") {
			t.Errorf("warned with no machine in the file: %s", w)
		}
	}
}

// A signal written with nothing (its source commented out, or forgotten),
// or an explicit null, is not read: a warning, so that a file that loaded
// before does not stop the agent after an upgrade.
func TestEmptySignalWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", "    running:\n    #  mqtt: { broker: broker, topic: a/b, field: run }\n    scrap_count: ~\n    good_count:\n", 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		"w.yaml:13:13: machines[0].running: empty: this signal is not read (give its source (opcua: {...} or mqtt: {...}), or remove the key)",
		"w.yaml:15:18: machines[0].scrap_count: empty: this signal is not read (give its source (opcua: {...} or mqtt: {...}), or remove the key)")
}

// wantProblems checks that Parse refuses yaml (as t.yaml) with exactly the
// problems want, in order.
func wantProblems(t *testing.T, name, yaml string, want []string) {
	t.Helper()
	_, err := Parse("t.yaml", []byte(yaml))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: %v", name, err)
	}
	var got []string
	for _, p := range pe.Problems {
		got = append(got, p.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: got\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// wantWarnings parses yaml as w.yaml, which must load, and compares its warnings.
func wantWarnings(t *testing.T, yaml string, want ...string) {
	t.Helper()
	c, err := Parse("w.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings {
		got = append(got, w.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Two machines counting good pieces into one work center overwrite each
// other's absolute quantity: a warning (an error would stop a service that
// ran on the same file before an upgrade).
func TestTwoCountersOnOneWorkcenterWarned(t *testing.T) {
	y := base + `  - id: m2
    workcenter: WC1
    good_count:
      opcua: { server: plc, node: "ns=2;s=M2.Good" }
  - id: m3
    workcenter: WC1
    running:
      opcua: { server: plc, node: "ns=2;s=M3.Run" }
    good_count:
      mqtt: { broker: broker, topic: m3/good }
`
	wantWarnings(t, y,
		`w.yaml:20:17: machines[1].workcenter: work center "WC1" already gets good_count from machine m1: their counts overwrite each other in Odoo (one machine per work center counts good pieces (the quantity is written as an absolute value): map the other machine to its own work center, or drop its good_count)`,
		`w.yaml:24:17: machines[2].workcenter: work center "WC1" already gets good_count from machine m1: their counts overwrite each other in Odoo (one machine per work center counts good pieces (the quantity is written as an absolute value): map the other machine to its own work center, or drop its good_count)`)
}

// min_stop on a machine without a running signal does nothing: worth a word.
func TestMinStopWithoutRunningWarned(t *testing.T) {
	wantWarnings(t, base+"    min_stop: 5s\n",
		`w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`,
		`w.yaml:19:15: machines[0].min_stop: has no effect: the machine has no running signal`)
}

// Slips that used to load silently and never worked: warnings at their
// place (an error would stop, after an upgrade, an agent that ran on the
// file before).
func TestSilentSlipsWarned(t *testing.T) {
	unused := `w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`
	wantWarnings(t, base+"    downtime_reason:\n      opcua: { server: plc, node: \"ns=2;s=M1.Reason\" }\n", unused,
		`w.yaml:20:7: machines[0].downtime_reason: has no effect: the machine has no running signal (a downtime reason names the loss of a stop, and stops come from running)`)
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: m1, field: \"$.state.run\" } }\n",
		`w.yaml:19:58: machines[0].running.mqtt.field: field path "$.state.run" looks like JSONPath (write a plain dot path without $ and brackets: counters.good, and values.0.v for the first element of an array)`)
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: m1, field: run, timestamp_field: \"$.ts\" } }\n",
		`w.yaml:19:80: machines[0].running.mqtt.timestamp_field: field path "$.ts" looks like JSONPath (write a plain dot path without $ and brackets: ts, or meta.time)`)
	// A downtime_reason without a map gives every stop the default loss
	// (the OT probe: validated OK); with one, or without running (warned
	// of as having no effect), no word of it.
	wantWarnings(t, base+"    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n    downtime_reason:\n      opcua: { server: plc, node: \"ns=2;s=M1.Reason\" }\n", unused,
		`w.yaml:21:7: machines[0].downtime_reason: has no map: every stop gets the default loss, its code only in the downtime line's description (add map: { CODE: Loss name } for the codes the machine sends (the log names each unmapped code))`)
	wantWarnings(t, base+"    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n    downtime_reason:\n      opcua: { server: plc, node: \"ns=2;s=M1.Reason\" }\n      map: { JAM: Equipment Failure }\n", unused)
	wantWarnings(t, base+"    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n    downtime_reason:\n      opcua: { server: plc, node: \"ns=2;s=M1.Reason\" }\n      map: {}\n", unused)
	// A JSON Pointer (RFC 6901) is read as one key named so, never found
	// (the OT probe: no word of it).
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: m1, field: /state/run, timestamp_field: /meta/ts } }\n",
		`w.yaml:19:58: machines[0].running.mqtt.field: field path "/state/run" looks like a JSON Pointer (/a/b) (write a dot path: state.run)`,
		`w.yaml:19:87: machines[0].running.mqtt.timestamp_field: field path "/meta/ts" looks like a JSON Pointer (/a/b) (write a dot path: meta.ts)`)
	// The agent listened on a port the system picked, where status and
	// flush never found it (the conformance audit: "running but does not
	// answer at 127.0.0.1:0"). A warning: a file that ran before runs on.
	wantWarnings(t, base+"listen: 127.0.0.1:0\n", unused,
		`w.yaml:19:9: listen: port 0 in "127.0.0.1:0": the agent listens on a port the system picks (plantedge status and flush cannot find it there: give a port of 1 to 65535, e.g. 127.0.0.1:9464)`)
	// A bare value carries no time: the timestamp_field was never read (the
	// conformance audit: validate said OK, and every value took its
	// receive time).
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: m1, timestamp_field: ts } }\n",
		`w.yaml:19:68: machines[0].running.mqtt.timestamp_field: not used without field: a bare value (a number or a bool) carries no time, so the values are taken at their receive time (for a JSON payload, give field the value's path; else remove timestamp_field)`)
	// A topic copied from a path ("/plant/m1") is another topic than
	// plant/m1, and a timestamp_field naming the value's own field dates
	// each value by its count (the OT probe: both validated OK).
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: /plant/m1, field: run } }\n",
		`w.yaml:19:47: machines[0].running.mqtt.topic: topic "/plant/m1" begins or ends with /: an empty topic level, another topic than "plant/m1" (remove the slash, unless the publisher's topic really has it (mosquitto_sub -t '#' -v shows the topics sent))`)
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: plant/m1/, field: run } }\n",
		`w.yaml:19:47: machines[0].running.mqtt.topic: topic "plant/m1/" begins or ends with /: an empty topic level, another topic than "plant/m1" (remove the slash, unless the publisher's topic really has it (mosquitto_sub -t '#' -v shows the topics sent))`)
	// A non-breaking or zero-width space pasted into a topic or a node
	// id looks right and never matches (the re-read of the lookalike
	// warnings: one inside a value had no word).
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: \"plant/press\u00a07\", field: run } }\n",
		`w.yaml:19:47: machines[0].running.mqtt.topic: topic "plant/press\u00a07" holds at character 12 a space that is not the plain one (U+00A0) (retype the topic, unless the publisher's topic really has it (mosquitto_sub -t '#' -v shows the topics sent))`)
	wantWarnings(t, strings.Replace(base, `node: "ns=2;s=M1.Good" }`, "node: \"ns=2;s=M1.\u200bGood\" }", 1), unused,
		`w.yaml:18:35: machines[0].good_count.opcua.node: node id "ns=2;s=M1.\u200bGood" holds at character 11 an invisible character (U+200B) (retype the node id, unless the server's identifier really has it (plantedge browse shows them))`)
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: plant/press 7, field: run } }\n")
	wantWarnings(t, base+"    running: { mqtt: { broker: broker, topic: m1, field: run, timestamp_field: run } }\n",
		`w.yaml:19:80: machines[0].running.mqtt.timestamp_field: is the value's own field "run" (timestamp_field names the field holding the value's time (e.g. ts); remove it if the payload carries none)`)
	wantWarnings(t, strings.Replace(base, `node: "ns=2;s=M1.Good" }`, `node: "ns=2;s=M1.Good " }`, 1), unused,
		`w.yaml:18:35: machines[0].good_count.opcua.node: node id "ns=2;s=M1.Good " begins or ends with white space (remove it, unless the server's identifier really has it)`)
	wantWarnings(t, base+"    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n    min_stop: 25h\n", unused,
		`w.yaml:20:15: machines[0].min_stop: 25h0m0s keeps every stop shorter than that out of Odoo: real stops, not only blips, would be missing from the work center's downtime (min_stop is for the blips of a chattering run bit, a few seconds (e.g. 5s))`)
	twoSessions := strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n  - name: plc2\n    endpoint: opc.tcp://LOCALHOST:4840\n  - name: plc3\n    endpoint: opc.tcp://127.0.0.1:4841\n", 1)
	twoSessions = strings.Replace(twoSessions, `opcua: { server: plc, node: "ns=2;s=M1.Good" }`, `opcua: { server: plc, node: "ns=2;s=M1.Good" }
    scrap_count:
      opcua: { server: plc2, node: "ns=2;s=M1.Scrap" }
    running:
      opcua: { server: plc3, node: "ns=2;s=M1.Run" }`, 1)
	wantWarnings(t, twoSessions,
		`w.yaml:11:15: opcua[1].endpoint: the same server as "plc"'s endpoint: each entry opens a session of its own, and a PLC serves only a few (put the nodes of both under one entry, unless they need other settings (security, user, publishing interval))`,
		`w.yaml:15:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`)
	wantWarnings(t, strings.Replace(base, `node: "ns=2;s=M1.Good" }`, `node: "s=M1.Good" }`, 1), unused,
		`w.yaml:18:35: machines[0].good_count.opcua.node: node id "s=M1.Good" names no namespace, so it is in namespace 0, the OPC UA standard's own nodes (write the namespace of the PLC's tags, e.g. "ns=2;s=M1.Good" (plantedge browse shows the ids))`)
	const hint = " (write the code exactly as in Odoo (Manufacturing > Configuration > Work Centers))"
	wantWarnings(t, strings.Replace(base, "workcenter: WC1", `workcenter: " WC1"`, 1), unused,
		`w.yaml:16:17: machines[0].workcenter: work-center code " WC1" holds white space at an end, or an invisible character`+hint)
	wantWarnings(t, strings.Replace(base, "workcenter: WC1", "workcenter: WC\u200b1", 1), unused,
		`w.yaml:16:17: machines[0].workcenter: work-center code "WC\u200b1" holds white space at an end, or an invisible character`+hint)
	wantWarnings(t, strings.Replace(base, "workcenter: WC1", "workcenter: Assembly 1", 1), unused) // a space inside is fine
	wantWarnings(t, strings.Replace(base, `node: "ns=2;s=M1.Good" }`, `node: "ns=2;s=M1.Good" }`+"\n      rollover: 18446744073709551615", 1), unused,
		`w.yaml:19:17: machines[0].good_count.rollover: 18446744073709551615 is beyond 2^53, more than a piece counter holds (the counter's modulus, e.g. 4294967296 for a 32-bit counter; leave it out for a 64-bit one)`)
	latin1 := `w.yaml:1:11: not UTF-8: byte 0xfc (a value with it reads wrong: a work-center code or loss name Odoo does not have) (save the file as UTF-8 (it looks like Latin-1 or Windows-1252))`
	wantWarnings(t, "# Presse f\xfcr Halle 2\n"+base, latin1, strings.Replace(unused, "11:11", "12:11", 1))
}

func TestBillionLaughsRefused(t *testing.T) {
	// Each level merges the previous one ten times: 10^8 entries if expanded.
	var b strings.Builder
	b.WriteString("x-a: &a {id: m, workcenter: w}\n")
	prev := "a"
	for i := 0; i < 8; i++ {
		name := string(rune('b' + i))
		b.WriteString("x-" + name + ": &" + name + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]}\n")
		prev = name
	}
	b.WriteString(base)
	b.WriteString("  - <<: *" + prev + "\n")
	_, err := Parse("laughs.yaml", []byte(b.String()))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(err.Error(), "too large to check") {
		t.Fatalf("err = %v", err)
	}
}

// A file too large to check is one problem that says so — not thousands of
// "required" problems from the part decoded before the limit.
func TestTooLargeIsOneProblem(t *testing.T) {
	machine := func(b *strings.Builder, i int) {
		fmt.Fprintf(b, `  - id: m%d
    workcenter: WC%d
    good_count: { mqtt: { broker: broker, topic: plant/m%d, field: good } }
    scrap_count: { mqtt: { broker: broker, topic: plant/m%d, field: scrap } }
    running: { mqtt: { broker: broker, topic: plant/m%d, field: running } }
    downtime_reason: { mqtt: { broker: broker, topic: plant/m%d, field: reason }, map: { 1: Setup and Adjustments, 2: Equipment Failure } }
`, i, i, i, i, i, i)
	}
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"mqtt:\n  - { name: broker, url: \"tcp://127.0.0.1:1883\", client_id: pe }\nmachines:\n"
	var b strings.Builder
	b.WriteString(head)
	for i := range 1000 {
		machine(&b, i)
	}
	if _, err := Parse("big.yaml", []byte(b.String())); err != nil {
		t.Fatalf("1,000 fully mapped machines: %v", err)
	}
	for i := 1000; i < 5000; i++ {
		machine(&b, i)
	}
	_, err := Parse("big.yaml", []byte(b.String()))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(err.Error(), "too large to check") {
		t.Fatalf("5,000 machines: %d problems, %.300v", len(ce.Problems), err)
	}
	_, err = Parse("huge.yaml", append([]byte(head), make([]byte, MaxFileBytes)...))
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(err.Error(), "file too large") {
		t.Fatalf("a file over the limit: %.300v", err)
	}
	// Load reads no more than that: a log file or a device named by -c.
	huge := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(huge, append([]byte(head), make([]byte, 5<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:1:1: file too large: %d bytes, a configuration is at most %d", huge, len(head)+5<<20, MaxFileBytes)
	if _, err := Load(huge); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load of a 5 MiB file: %v, want %q", err, want)
	}
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "file too large: more than 4194304 bytes") {
		t.Errorf("Load of /dev/zero: %v", err)
	}
	if c, err := Endpoints(huge); err != nil || c.Site != "s" {
		t.Errorf("Endpoints of a file too large to load: %v, %v", c, err)
	}
}

func TestParseDurationAndByteSize(t *testing.T) {
	durs := map[string]time.Duration{"20ms": 20 * time.Millisecond, "5s": 5 * time.Second, "1m": time.Minute, "1h30m": 90 * time.Minute, "0": 0}
	for in, want := range durs {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5", "-1s", "1 fortnight"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
	sizes := map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "64MB": 64e6, "100000": 100000, "10kB": 10000, "10KB": 10000, "2KiB": 2048, "2K": 2048, "1 GiB": 1 << 30, "1G": 1 << 30, "1GB": 1e9}
	for in, want := range sizes {
		got, err := ParseByteSize(in)
		if err != nil || int64(got) != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "1.5GiB", "-1", "1PB", "99999999999TiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", bad)
		}
	}
	// Exact, in the largest unit that divides: a decimal size as written
	// (1TB was "976562500KiB"), and read back as the same size.
	for size, want := range map[ByteSize]string{1 << 30: "1GiB", 1e12: "1TB", 64e6: "64MB", 3 << 10: "3KiB", 1000: "1000", 1<<20 + 1: "1048577"} {
		if s := size.String(); s != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", size, s, want)
		} else if back, err := ParseByteSize(s); err != nil || back != size {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", s, back, err, size)
		}
	}
}

// A size with a fraction is refused saying so, with the whole number of a
// smaller unit it means (the conformance audit: "1.5GiB" was said to have
// an invalid unit ".5GiB").
func TestParseByteSizeFraction(t *testing.T) {
	for in, want := range map[string]string{
		"1.5GiB":  `size "1.5GiB" has a fraction: a size is a whole number of its unit; write it as "1536MiB"`,
		"0.5 GB":  `size "0.5 GB" has a fraction: a size is a whole number of its unit; write it as "500MB"`,
		"2.25g":   `size "2.25g" has a fraction: a size is a whole number of its unit; write it as "2304MiB"`,
		"1.0GiB":  `size "1.0GiB" has a fraction: a size is a whole number of its unit; write it as "1GiB"`,
		"1.3GiB":  `size "1.3GiB" has a fraction, and is no whole number of bytes: write a whole number of a smaller unit, such as "1331MiB"`,
		"1.5":     `size "1.5" has a fraction: a size is a whole number of bytes`,
		"1,5GiB":  `invalid size unit ",5GiB" in "1,5GiB"`,
		"1.5.3MB": `invalid size "1.5.3MB"`,
	} {
		_, err := ParseByteSize(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseByteSize(%q): %v; want %s", in, err, want)
		}
	}
}

func TestOdooAPIKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{Odoo: Odoo{APIKeyFile: keyFile}}

	t.Setenv(EnvAPIKey, "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if got, err := c.OdooAPIKey(); err != nil || got != "from-file" {
		t.Errorf("file: %q, %v", got, err)
	}

	credDir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	if got, err := c.OdooAPIKey(); err != nil || got != "from-file" {
		t.Errorf("empty credentials dir, file: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(credDir, CredentialAPIKey), []byte("from-cred\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.OdooAPIKey(); err != nil || got != "from-cred" {
		t.Errorf("credential: %q, %v", got, err)
	}

	t.Setenv(EnvAPIKey, " from-env ")
	if got, err := c.OdooAPIKey(); err != nil || got != "from-env" {
		t.Errorf("env: %q, %v", got, err)
	}

	t.Setenv(EnvAPIKey, "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	missing := &Config{Odoo: Odoo{APIKeyFile: filepath.Join(dir, "absent")}}
	_, err := missing.OdooAPIKey()
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrNoSecret) {
		t.Fatalf("err = %v", err)
	}
	want := "odoo api key: looked in $PLANTEDGE_ODOO_API_KEY (unset or empty), $CREDENTIALS_DIRECTORY (unset), " + filepath.Join(dir, "absent") + ": secret not found"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}

	// The key pasted where its file's path belongs: never echoed.
	for _, cred := range []string{"", t.TempDir()} {
		t.Setenv("CREDENTIALS_DIRECTORY", cred)
		pasted := &Config{Odoo: Odoo{APIKeyFile: "daf43efe0123cafe"}}
		if _, err := pasted.OdooAPIKey(); err == nil || strings.Contains(err.Error(), "daf43efe0123cafe") || !strings.Contains(err.Error(), "value not shown") {
			t.Errorf("pasted key, CREDENTIALS_DIRECTORY %q: %v", cred, err)
		}
		for _, pw := range []string{"hunter2", "k9/Xq2+Zr8bT1==", "/k9/Xq2Zr8bT1", "/Pa-ss/w0rd.1"} { // base64 has slashes
			if _, err := ReadSecret(pw); err == nil || strings.Contains(err.Error(), pw) {
				t.Errorf("pasted password %q, CREDENTIALS_DIRECTORY %q: %v", pw, cred, err)
			}
		}
		if _, err := ReadSecret("/etc/plantedge-absent/mqtt-password"); err == nil || !strings.Contains(err.Error(), "/etc/plantedge-absent/mqtt-password") {
			t.Errorf("a missing file's path is not shown: %v", err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")

	// Saved by an editor on Windows: byte-order mark and CRLF.
	if err := os.WriteFile(keyFile, []byte("\ufefffrom-notepad\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.OdooAPIKey(); err != nil || got != "from-notepad" {
		t.Errorf("key file with BOM and CRLF: %q, %v", got, err)
	}
	// A second line (a note, another key) would be sent as part of the key.
	if err := os.WriteFile(keyFile, []byte("from-file\r\nold-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.OdooAPIKey(); err == nil || !strings.Contains(err.Error(), "the file holds 2 lines") || strings.Contains(err.Error(), "old-key") {
		t.Errorf("key file with two lines: %q, %v", got, err)
	}

	// A control character (a keystroke pasted with it) failed in the HTTP
	// header as "cannot reach Odoo": said here, without the key.
	if err := os.WriteFile(keyFile, []byte("PLANTEDGE-KEY\x01SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.OdooAPIKey(); err == nil || !strings.Contains(err.Error(), "character 14 of the secret is a control character (U+0001)") ||
		strings.Contains(err.Error(), "SECRET") {
		t.Errorf("key file with a control character: %q, %v", got, err)
	}
	if err := os.WriteFile(keyFile, []byte("PLANTEDGE-KEY\u200bSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.OdooAPIKey(); err == nil || !strings.Contains(err.Error(), "character 14 of the secret is an invisible formatting character (U+200B)") {
		t.Errorf("key file with a zero-width space: %q, %v", got, err)
	}
	t.Setenv("PLANTEDGE_TEST_SECRET", "abc\x1bdef")
	if _, err := EnvSecret("PLANTEDGE_TEST_SECRET"); err == nil || !strings.Contains(err.Error(), "$PLANTEDGE_TEST_SECRET: character 4") {
		t.Errorf("environment secret with a control character: %v", err)
	}

	if err := os.WriteFile(keyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OdooAPIKey(); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty key file: %v", err)
	}
}

// An MQTT password over a plain connection to another host is worth a word.
func TestMQTTPasswordInClearWarned(t *testing.T) {
	y := strings.Replace(base, "    client_id: pe-1\n", "    client_id: pe-1\n    username: plant\n    password_file: /etc/plantedge/mqtt-password\n", 1)
	y = strings.Replace(y, "tcp://127.0.0.1:1883", "tcp://10.1.2.10:1883", 1)
	wantWarnings(t, y,
		`w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`,
		`w.yaml:15:20: mqtt[0].password_file: the password crosses the network unencrypted (the URL is not TLS) (use ssl:// or wss://)`)
	// mqtt:// is tcp://; mqtts:// is TLS.
	wantWarnings(t, strings.Replace(y, "tcp://10.1.2.10:1883", "mqtt://10.1.2.10:1883", 1),
		`w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`,
		`w.yaml:15:20: mqtt[0].password_file: the password crosses the network unencrypted (the URL is not TLS) (use ssl:// or wss://)`)
	wantWarnings(t, strings.Replace(y, "tcp://10.1.2.10:1883", "mqtts://10.1.2.10:8883\n    ca_file: /etc/plantedge/ca.pem", 1),
		`w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`)
}

func TestReadSecretCredentialsDirectory(t *testing.T) {
	credDir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	if err := os.WriteFile(filepath.Join(credDir, "mqtt-password"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecret("mqtt-password"); err != nil || got != "s3cret" {
		t.Errorf("relative name: %q, %v", got, err)
	}
	if _, err := ReadSecret(filepath.Join(credDir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := ReadSecret(""); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty path: %v", err)
	}
}

func structFieldsOf(v any) (map[string][]int, []string) {
	return structFields(reflectTypeOf(v))
}

func reflectTypeOf(v any) reflect.Type { return reflect.TypeOf(v) }

// A file that does not load still tells the commands where the agent and its
// buffer are.
// A file saved by a Windows editor starts with a UTF-8 byte order mark:
// it loads like the same file without one.
func TestByteOrderMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bom.yaml")
	if err := os.WriteFile(path, []byte("\xef\xbb\xbf"+base+"listen: 127.0.0.1:9555\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Site != "plant-1" {
		t.Fatalf("a file with a byte order mark: %v", err)
	}
	e, err := Endpoints(path)
	if err != nil || e.Site != "plant-1" || e.Listen != "127.0.0.1:9555" {
		t.Fatalf("Endpoints of a file with a byte order mark = %+v, %v", e, err)
	}
}

func TestEndpointsOfABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	yaml := "site: plant-9   # the plant\ndata_dir: \"/srv/plantedge\"\nlisten: '127.0.0.1:9555'\nmachines:\n  - id: m1\n    workcenter: { broken\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("the broken file loaded")
	}
	c, err := Endpoints(path)
	if err != nil || c.Site != "plant-9" || c.DataDir != "/srv/plantedge" || c.Listen != "127.0.0.1:9555" {
		t.Fatalf("Endpoints = %+v, %v", c, err)
	}
}

// A broken file's Odoo and quota are read too, where they are written in
// block style: deadletter tells another Odoo's refusals by odoo.url and
// odoo.database (without them every dead letter looked refused elsewhere,
// and a retry kept them all), status shows the quota. A url of another
// section (an MQTT broker's) is not taken for Odoo's.
func TestEndpointsReadOdooAndQuotaOfABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	yaml := `site: plant-9
buffer:
  max_bytes: 64MiB   # small box
odoo:
  # the ERP
  url: "https://erp.example.com"
  database: 'prod'
  bogus: 1
mqtt:
  - name: b
    url: tcp://10.1.2.10:1883
machines: [ { broken
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("the broken file loaded")
	}
	c, err := Endpoints(path)
	if err != nil || c.Site != "plant-9" || c.Odoo.URL != "https://erp.example.com" || c.Odoo.Database != "prod" || c.Buffer.MaxBytes != 64<<20 {
		t.Fatalf("Endpoints = site %q, odoo %q %q, max_bytes %d, %v; want plant-9, https://erp.example.com prod, 64MiB", c.Site, c.Odoo.URL, c.Odoo.Database, c.Buffer.MaxBytes, err)
	}

	// A password in the URL (a problem that stops the file loading) is
	// not taken: status prints the URL. Nor is a URL without its scheme.
	for written, want := range map[string]string{
		"https://bot:hunter2@erp.example.com:8069/odoo": "https://erp.example.com:8069/odoo",
		"bot:hunter2@erp.example.com":                   "",
		"erp.example.com":                               "",
	} {
		broken := strings.Replace(yaml, `url: "https://erp.example.com"`, "url: "+written, 1)
		if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err := Endpoints(path); err != nil || c.Odoo.URL != want {
			t.Errorf("Endpoints of url: %s = %q, %v; want %q", written, c.Odoo.URL, err, want)
		}
	}

	// Odoo written in flow style, and a url under mqtt only: not read.
	yaml = "site: plant-9\nodoo: { url: \"https://erp.example.com\", database: prod }\nmqtt:\n  - name: b\n    url: tcp://10.1.2.10:1883\nbogus: 1\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Endpoints(path); err != nil || c.Odoo.URL != "" || c.Odoo.Database != "" || c.Buffer.MaxBytes != 1<<30 {
		t.Fatalf("Endpoints of flow-style odoo = odoo %q %q, max_bytes %d, %v; want none read, the default quota", c.Odoo.URL, c.Odoo.Database, c.Buffer.MaxBytes, err)
	}
}

// Any listen address other than loopback (or a unix socket) is worth a
// word: status and /metrics are readable from the network.
func TestListenBeyondLoopbackWarned(t *testing.T) {
	for listen, warns := range map[string]bool{
		"127.0.0.1:9464": false, "localhost:9464": false, "[::1]:9464": false, "unix:/run/plantedge/api.sock": false,
		"0.0.0.0:9464": true, ":9464": true, "192.0.2.2:9464": true, "edge-box:9464": true,
	} {
		c, err := Parse("w.yaml", []byte(strings.Replace(base, "site: plant-1", "site: plant-1\nlisten: \""+listen+"\"", 1)))
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, w := range c.Warnings {
			got = got || strings.HasPrefix(w.Path, "listen")
		}
		if got != warns {
			t.Errorf("listen %s: warned %v, want %v (%v)", listen, got, warns, c.Warnings)
		}
	}
}

// A secure OPC UA connection without a pinned server certificate accepts
// any certificate: worth a word.
func TestUnpinnedSecureServerWarned(t *testing.T) {
	y := strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    security_policy: Basic256Sha256\n    security_mode: SignAndEncrypt\n", 1)
	wantWarnings(t, y,
		`w.yaml:10:22: opcua[0].security_policy: the server's certificate is not pinned: any certificate it presents is accepted (set server_thumbprint to the thumbprint the agent logs at connect)`,
		`w.yaml:13:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`)
}

// A machine entry copied from another and not pointed at its own counter
// counts the other's pieces a second time: a warning.
func TestSameCounterOnTwoMachinesWarned(t *testing.T) {
	y := base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=M1.Good" }
  - id: m3
    workcenter: WC3
    scrap_count:
      mqtt: { broker: broker, topic: line/state, field: m2.scrap }
  - id: m4
    workcenter: WC4
    scrap_count:
      mqtt: { broker: broker, topic: line/state, field: m3.scrap }
    good_count:
      mqtt: { broker: broker, topic: line/state, field: m2.scrap }
`
	wantWarnings(t, y,
		`w.yaml:22:7: machines[1].good_count: reads the same counter as m1 good_count (OPC UA plc node ns=2;s=M1.Good): its pieces are counted twice (a copied entry? point it at this machine's own counter)`,
		`w.yaml:32:7: machines[3].good_count: reads the same counter as m3 scrap_count (MQTT broker topic line/state field m2.scrap): its pieces are counted twice (a copied entry? point it at this machine's own counter)`)
}

// Machine ids that differ only in letter case do not collide (external
// ids, buffer keys and metric labels are case-sensitive) but confuse
// people: a warning at the second (the val54 probe: M1 and m1 validated
// without a word).
func TestMachineIDsDifferingInCaseWarned(t *testing.T) {
	y := base + `  - id: M1
    workcenter: WC2
    good_count:
      mqtt: { broker: broker, topic: m1/good }
  - id: m2
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "ns=2;s=M2.Good" }
`
	wantWarnings(t, y,
		`w.yaml:19:9: machines[1].id: machine id "M1" differs from "m1" (machines[0]) only in letter case: the agent keeps them apart, people may not (accept-qty, status and the metrics name each exactly as written — accept-qty m1 acts on machines[0], not on this one — and a search that ignores case (Odoo's, a spreadsheet's) finds both: give them ids that differ in more than case)`)
}

// A file saved on Windows (CRLF, a byte order mark) or with lone CRs reads
// as the same file with LF: its values, and its problems' lines (the val54
// probe: a quoted value folded over two lines read "WC\n1", not "WC 1",
// and an unclosed quote was said at line 27 of a 23-line file).
func TestWindowsLineEndsReadAsLF(t *testing.T) {
	folded := strings.Replace(base, "    workcenter: WC1\n", "    workcenter: \"WC\n      1\"\n", 1)
	unclosed := strings.Replace(base, `node: "ns=2;s=M1.Good" }`, `node: "ns=2;s=M1.Good }`, 1) + "  - id: m2\n    workcenter: \"WC2\"\n"
	for name, conv := range map[string]func(string) string{
		"CRLF":     func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") },
		"BOM CRLF": func(s string) string { return "\ufeff" + strings.ReplaceAll(s, "\n", "\r\n") },
		"CR":       func(s string) string { return strings.ReplaceAll(s, "\n", "\r") },
	} {
		c, err := Parse("w.yaml", []byte(conv(folded)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Machines[0].Workcenter != "WC 1" {
			t.Errorf("%s: workcenter %q, want %q", name, c.Machines[0].Workcenter, "WC 1")
		}
		_, lf := Parse("w.yaml", []byte(unclosed))
		_, err = Parse("w.yaml", []byte(conv(unclosed)))
		if lf == nil || err == nil || err.Error() != lf.Error() {
			t.Errorf("%s: %v\nwant as with LF: %v", name, err, lf)
		}
	}
}

// What a paste from a document or a spreadsheet leaves that parses but is
// not read as it looks: typographic quotes around a value (part of it),
// a line indented with non-breaking spaces (read as a key of its own, or
// as part of the value above), each warned of at its line:column (the
// val54 probe: an invalid node id with no word of its quotes, a work
// center "“WC2”" validated OK, "node: required" for a node: line there).
func TestPastedLookalikesWarned(t *testing.T) {
	y := strings.Replace(base, "    workcenter: WC1\n", "    workcenter: \u201cWC1\u201d # contact:\u00a0J.\u00a0Doe\n", 1) + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=M2.Good" }
    running:
      mqtt:
        broker: broker
` + "\u00a0       topic: m2/run\n"
	_, err := Parse("w.yaml", []byte(y))
	if err == nil {
		t.Fatal("no problem")
	}
	var got []string
	for _, p := range err.(*Error).Problems {
		got = append(got, p.String())
	}
	for _, p := range err.(*Error).Warnings {
		got = append(got, "warning: "+p.String())
	}
	if n := strings.Count(strings.Join(got, "\n"), "U+00A0"); n != 1 {
		t.Errorf("%d non-breaking spaces warned of, want 1 (not those of a comment):\n%s", n, strings.Join(got, "\n"))
	}
	for _, want := range []string{
		"w.yaml:16:17: machines[0].workcenter: written in typographic quotes (\u201cWC1\u201d), which YAML does not take for quotes: they are part of the value (write straight quotes (\"...\" or '...'), or none)",
		"w.yaml:26:1: this column holds a non-breaking space (U+00A0), which YAML takes for text, not a space: retype it as a plain space (a paste from a spreadsheet or a web page? The line is not read as it looks)",
	} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasSuffix(g, want) }) {
			t.Errorf("no %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// Two broker entries with one URL (a second entry for another client id)
// read one topic: the same counter, whatever the entries are called.
func TestSameCounterThroughTwoBrokerEntriesWarned(t *testing.T) {
	y := strings.Replace(base, "machines:\n", `  - name: broker-copy
    url: TCP://127.0.0.1:1883/
    client_id: pe-2
machines:
`, 1) + `  - id: m2
    workcenter: WC2
    good_count:
      mqtt: { broker: broker, topic: line/m2, field: good }
  - id: m3
    workcenter: WC3
    good_count:
      mqtt: { broker: broker-copy, topic: line/m2, field: good }
`
	c, err := Parse("w.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings {
		if strings.Contains(w.Msg, "reads the same counter") {
			got = append(got, w.Path+": "+w.Msg)
		}
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "machines[2].good_count: reads the same counter as m2 good_count") {
		t.Errorf("warnings %q", got)
	}
}

// 65535 written as a 16-bit counter's rollover, and a topic with a
// trailing space: both legal, both almost certainly a slip.
func TestRolloverAndTopicSlipsWarned(t *testing.T) {
	y := base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=M2.Good" }
      rollover: 65535
    scrap_count:
      mqtt: { broker: broker, topic: "m2/state ", field: scrap }
      rollover: 10000
`
	wantWarnings(t, y,
		`w.yaml:23:17: machines[1].good_count.rollover: 65535 is the largest value of a 16-bit counter, not its modulus (rollover is the number of values: 65536 for a counter that goes from 65535 to 0)`,
		`w.yaml:25:38: machines[1].scrap_count.mqtt.topic: topic "m2/state " begins or ends with white space (remove it, unless the publisher's topic really has it)`)
}

// A file with problems also carries its warnings, so validate shows both
// in one round: fixing the problems must not reveal more.
func TestProblemsComeWithTheirWarnings(t *testing.T) {
	y := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"mqtt:\n  - { name: broker, url: \"tcp://127.0.0.1:1883\", client_id: pe }\nmachines:\n" +
		"  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: brokr, topic: plant/m1, field: good } } }\n" +
		"  - { id: m2, workcenter: W2, good_count: { mqtt: { broker: broker, topic: \"plant/m2 \", field: good } } }\n"
	_, err := Parse("t.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0].Msg, `unknown MQTT broker "brokr"`) {
		t.Fatalf("problems: %v", err)
	}
	if len(ce.Warnings) != 1 || !strings.Contains(ce.Warnings[0].Msg, `topic "plant/m2 " begins or ends with white space`) {
		t.Errorf("warnings with the problem: %+v", ce.Warnings)
	}
	if strings.Contains(err.Error(), "white space") {
		t.Errorf("a warning in the error text: %v", err)
	}
}

// Slips an OT engineer makes editing the mapping get a hint that names the
// fix: a key indented one step too little or too much names where it
// belongs, and "key:value" asks for the space after the colon.
func TestHintsForIndentationAndColons(t *testing.T) {
	base := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"mqtt:\n  - { name: broker, url: \"tcp://127.0.0.1:1883\", client_id: pe }\nmachines:\n  - id: m1\n    workcenter: W1\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"rollover at the machine", base + "    good_count: { mqtt: { broker: broker, topic: t, field: good } }\n    rollover: 65536\n",
			"machines[0].rollover: unknown key (check its indentation: it belongs under good_count: or scrap_count:, beside its opcua: or mqtt:)"},
		{"map inside mqtt", base + "    downtime_reason:\n      mqtt: { broker: broker, topic: t, field: r, map: { J: Jam } }\n",
			"machines[0].downtime_reason.mqtt.map: unknown key (check its indentation: it belongs under downtime_reason:, beside its opcua: or mqtt:)"},
		{"a reason code beside map", base + "    running: { mqtt: { broker: broker, topic: t, field: run } }\n    downtime_reason:\n      mqtt: { broker: broker, topic: t, field: r }\n      map:\n      JAM: Equipment Failure\n",
			"t.yaml:12:7: machines[0].downtime_reason.JAM: unknown key (a reason code? write it under map:, indented further than map:)"},
		{"map in capitals", base + "    running: { mqtt: { broker: broker, topic: t, field: run } }\n    downtime_reason:\n      mqtt: { broker: broker, topic: t, field: r }\n      Map: { JAM: Equipment Failure }\n",
			"t.yaml:11:7: machines[0].downtime_reason.Map: unknown key (did you mean \"map\"?)"},
		{"defualt", base + "    running: { mqtt: { broker: broker, topic: t, field: run } }\n    downtime_reason:\n      mqtt: { broker: broker, topic: t, field: r }\n      defualt: Equipment Failure\n",
			"t.yaml:11:7: machines[0].downtime_reason.defualt: unknown key (did you mean \"default\"?)"},
		{"topic beside mqtt", base + "    good_count:\n      mqtt: { broker: broker, field: good }\n      topic: t\n",
			"machines[0].good_count.topic: unknown key (check its indentation: it belongs under a signal's mqtt:)"},
		{"a machine's key under its signal", strings.Replace(base, "    workcenter: W1\n", "", 1) + "    running:\n      mqtt: { broker: broker, topic: t, field: run }\n      workcenter: W1\n",
			"machines[0].running.workcenter: unknown key (check its indentation: it belongs to the machine, beside its id:)"},
		{"no space after the colon", strings.Replace(base, "site: s", "site:s", 1),
			`put a space after the colon: "site:…" is read as one word, not the key site`},
	} {
		_, err := Parse("t.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", c.name, err, c.want)
		}
	}
}

// A reason code written as a number in another form than a source's number
// arrives in (07, 0x2A, 1.0: the codes arrive as "7", "42", "1") is
// warned of: it is matched as written, so the stop gets the default loss
// (the yaml probe). A plain decimal code, or text, is not.
func TestNumericReasonCodeInAnotherFormWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", `    running:
      opcua: { server: plc, node: "ns=2;s=M1.Run" }
    downtime_reason:
      opcua: { server: plc, node: "ns=2;s=M1.Code" }
      map: { 07: Setup and Adjustments, 0x2A: Material Availability, 1.0: Quality, 12: Jam, JAM: Jam, 12345678901234567890: Jam, -9007199254740993: Jam }
    good_count:
`, 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		`w.yaml:17:18: machines[0].downtime_reason.map.07: reason code "07" is matched as written: a code sent as a number arrives as "7" (write 7, unless the source sends the text "07")`,
		`w.yaml:17:47: machines[0].downtime_reason.map.0x2A: reason code "0x2A" is matched as written: a code sent as a number arrives as "42" (write 42, unless the source sends the text "0x2A")`,
		`w.yaml:17:75: machines[0].downtime_reason.map.1.0: reason code "1.0" is matched as written: a code sent as a number arrives as "1" (write 1, unless the source sends the text "1.0")`)
}

// A reason code that is NaN or Infinity as a source writes one (NaN, inf)
// is never looked up: the mapping refuses such a value as no value. Written
// as YAML writes them (.nan, -.inf), the entry is that text, which no
// source's NaN matches either. Both are warned of at their line (the small
// leads probe: taken without a word); upper-case NAN and INF stay codes,
// as a PLC's text list may hold them.
func TestNonFiniteReasonCodeWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", `    running:
      opcua: { server: plc, node: "ns=2;s=M1.Run" }
    downtime_reason:
      opcua: { server: plc, node: "ns=2;s=M1.Code" }
      map: { NaN: Jam, .nan: Jam, -.inf: Jam, Infinity: Jam, NAN: Jam, INF: Jam }
    good_count:
`, 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		`w.yaml:17:19: machines[0].downtime_reason.map.NaN: reason code "NaN" is how a source writes a number with no value: the agent refuses such a value (logged), so this entry is never used (remove it)`,
		`w.yaml:17:30: machines[0].downtime_reason.map..nan: reason code ".nan" is YAML's way to write NaN or Infinity, but a map's code is text: a source's NaN or Infinity is refused (logged), and only the text ".nan" matches this entry (remove it, unless the source sends that text)`,
		`w.yaml:17:42: machines[0].downtime_reason.map.-.inf: reason code "-.inf" is YAML's way to write NaN or Infinity, but a map's code is text: a source's NaN or Infinity is refused (logged), and only the text "-.inf" matches this entry (remove it, unless the source sends that text)`,
		`w.yaml:17:57: machines[0].downtime_reason.map.Infinity: reason code "Infinity" is how a source writes a number with no value: the agent refuses such a value (logged), so this entry is never used (remove it)`)
}

// On a 32-bit system bbolt maps at most 2 GiB, which a buffer file past 1
// GiB needs: a larger buffer.max_bytes is refused at its line, not taken
// (the arch probe: 4GiB wrapped round to no limit on armv7, and appends
// failed at 2.1 GB). A 64-bit system takes it.
func TestMaxBytesOnA32BitSystem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(base+"buffer:\n  max_bytes: 4GiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func(was int) { intSize = was }(intSize)
	intSize = 64
	if _, err := Load(path); err != nil {
		t.Fatalf("64-bit: %v", err)
	}
	intSize = 32
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "buffer.max_bytes: 4GiB is above the 1GiB a 32-bit system can map") {
		t.Fatalf("32-bit: %v", err)
	}
	if err := os.WriteFile(path, []byte(base+"buffer:\n  max_bytes: 1GiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("32-bit, 1GiB: %v", err)
	}
}

// running_values: a machine-state word says which of its values run, and
// the same word may name the stops' losses; an empty list, or a state word
// read twice without running_values, is refused at its place.
func TestRunningValues(t *testing.T) {
	machine := func(running string) string {
		y := strings.Replace(base, "    good_count:\n", `    running:
      opcua: { server: plc, node: "ns=2;s=M1.State" }
`+running+`    downtime_reason:
      opcua: { server: plc, node: "ns=2;s=M1.State" }
      map: { "2": Equipment Failure }
    good_count:
`, 1)
		return strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	}
	wantWarnings(t, machine("      running_values: [1, 0x05, EXECUTE]\n"))
	c, err := Parse("w.yaml", []byte(machine("      running_values: [1, 0x05, EXECUTE]\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Machines[0].Running.RunningValues; strings.Join(got, ",") != "1,0x05,EXECUTE" {
		t.Errorf("running_values %q", got)
	}
	for _, tc := range []struct{ running, want string }{
		{"      running_values: []\n", "w.yaml:15:23: machines[0].running.running_values: empty list"},
		{"      running_values: [1, \"\"]\n", "w.yaml:15:27: machines[0].running.running_values[1]: empty value"},
		{"", "machines[0].downtime_reason: reads the same value as running"},
	} {
		_, err := Parse("w.yaml", []byte(machine(tc.running)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s", tc.running, err, tc.want)
		}
	}
	for code, want := range map[string]string{"1": "1", "0x05": "5", "5.0": "5", " Execute ": "execute", "007": "7", "true": "1", "FALSE": "0"} {
		if got := StateCode(code); got != want {
			t.Errorf("StateCode(%q) = %q, want %q", code, got, want)
		}
	}
}

// Signals on one OPC UA array node, each with its index, read one element
// each: their own values, which two signals of a machine may read as two
// of its counters; no index reads the whole node.
func TestArrayIndexAddresses(t *testing.T) {
	y := base + `  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=Counts", index: 0 }
    scrap_count:
      opcua: { server: plc, node: "ns=2;s=Counts", index: 1 }
  - id: m3
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "ns=3;s=\"DB\".\"arr\"[3]" }
`
	c, err := Parse("a.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  *OPCUARef
		want string
	}{
		{c.Machines[1].GoodCount.OPCUA, "ns=2;s=Counts[0]"},
		{c.Machines[1].ScrapCount.OPCUA, "ns=2;s=Counts[1]"},
		{c.Machines[2].GoodCount.OPCUA, `ns=3;s="DB"."arr"[3]`}, // brackets of the node id itself: no index
		{c.Machines[0].GoodCount.OPCUA, "ns=2;s=M1.Good"},
	} {
		if got := tc.ref.Address(); got != tc.want {
			t.Errorf("%+v: address %q, want %q", tc.ref, got, tc.want)
		}
	}
	if ix := c.Machines[2].GoodCount.OPCUA.Index; ix != nil {
		t.Errorf("index %d taken out of a node id's brackets", *ix)
	}
	if c.Machines[1].GoodCount.CounterSource() == c.Machines[1].ScrapCount.CounterSource() {
		t.Errorf("two elements are one counter source: %s", c.Machines[1].GoodCount.CounterSource())
	}
}

// sparkplug_rebirth or sparkplug_certificates on a broker no Sparkplug B
// signal reads does nothing: warned at its place; on the right broker, not.
func TestSparkplugOptionsWithoutSparkplugWarned(t *testing.T) {
	for _, tc := range []struct{ key, col, msg string }{
		{"sparkplug_rebirth", "24", "there is no edge node to ask for a rebirth"},
		{"sparkplug_certificates", "29", "there is no edge node whose BIRTH certificates to read"},
	} {
		on := strings.Replace(base, "    client_id: pe-1\n", "    client_id: pe-1\n    "+tc.key+": true\n", 1)
		json := strings.Replace(on, "    good_count:\n", "    running: { mqtt: { broker: broker, topic: m1/state, field: run } }\n    good_count:\n", 1)
		wantWarnings(t, json,
			`w.yaml:14:`+tc.col+`: mqtt[0].`+tc.key+`: no signal of MQTT broker "broker" reads format: sparkplug_b: `+tc.msg+` (set it on the broker the Sparkplug B signals name, or remove it)`)
		sp := strings.Replace(on, "    good_count:\n", "    running: { mqtt: { broker: broker, format: sparkplug_b, topic: spBv1.0/g/DDATA/e/d, field: Run } }\n    good_count:\n", 1)
		c, err := Parse("w.yaml", []byte(sp))
		if err != nil {
			t.Fatal(err)
		}
		if set := c.MQTT[0].SparkplugRebirth || c.MQTT[0].SparkplugCertificates; !set || len(c.Warnings) != 0 {
			t.Errorf("%s: set %v, warnings %v", tc.key, set, c.Warnings)
		}
	}
}

// A refused topic's advice names whom the broker's ACL goes by: the
// username when one is set (Mosquitto's ACLs do; the README audit: naming
// only the client id sent the admin to the wrong entry).
func TestACLSubject(t *testing.T) {
	for _, c := range []struct {
		b    MQTTBroker
		want string
	}{
		{MQTTBroker{ClientID: "pe-1"}, "client pe-1"},
		{MQTTBroker{ClientID: "pe-1", Username: "plantedge"}, "user plantedge (client pe-1)"},
	} {
		if got := c.b.ACLSubject(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.b, got, c.want)
		}
	}
}

// A reason code with white space at an end is matched without it (a
// source's code is read so): said at its place, and an entry that another,
// written without the white space, hides is said to be unused. A loss name
// with white space at an end, or an invisible character, is warned of as a
// work-center code is: Odoo compares names exactly (the ot-audit probe: a
// " 42" was told to match a source that "sends the text \" 42\"", which no
// source can).
func TestReasonCodeAndLossWithWhiteSpaceWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", `    running:
      opcua: { server: plc, node: "ns=2;s=M1.Run" }
    downtime_reason:
      opcua: { server: plc, node: "ns=2;s=M1.Code" }
      map: { " 42": Setup and Adjustments, "JAM ": Jam, "S": Short, "S ": Other, E1: "Equipment Failure " }
      default: "Quality\u200b"
    good_count:
`, 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		`w.yaml:17:21: machines[0].downtime_reason.map. 42: reason code " 42" begins or ends with white space: a source's code is read without it (matched as "42")`,
		`w.yaml:17:52: machines[0].downtime_reason.map.JAM : reason code "JAM " begins or ends with white space: a source's code is read without it (matched as "JAM")`,
		`w.yaml:17:75: machines[0].downtime_reason.map.S : reason code "S " begins or ends with white space: a source's code is read without it, and "S" is in the map too: this entry is never used (remove it)`,
		`w.yaml:17:86: machines[0].downtime_reason.map.E1: loss name "Equipment Failure " holds white space at an end, or an invisible character (write the name exactly as in Odoo (Manufacturing > Configuration > Loss Reasons), or its external id)`,
		`w.yaml:18:16: machines[0].downtime_reason.default: loss name "Quality\u200b" holds white space at an end, or an invisible character (write the name exactly as in Odoo (Manufacturing > Configuration > Loss Reasons), or its external id)`)
}

// Two codes that are one without their white space (" S", "S ") and no
// bare one: the mapping takes the first in sort order, and validate says
// the other is never used (each was said to be "matched as S").
func TestReasonCodesOneWithoutWhiteSpaceWarned(t *testing.T) {
	y := strings.Replace(base, "    good_count:\n", `    running:
      opcua: { server: plc, node: "ns=2;s=M1.Run" }
    downtime_reason:
      opcua: { server: plc, node: "ns=2;s=M1.Code" }
      map: { "S ": Beta, " S": Alpha }
    good_count:
`, 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		`w.yaml:17:20: machines[0].downtime_reason.map.S : reason code "S " begins or ends with white space: a source's code is read without it, and " S" is read as "S" too and taken: this entry is never used (remove it)`,
		`w.yaml:17:32: machines[0].downtime_reason.map. S: reason code " S" begins or ends with white space: a source's code is read without it (matched as "S")`)
}

// A decimal counter's largest value written as its rollover (999 for a
// counter that goes 0-999, as a classic S7 counter or an HMI's 4-digit
// counter 0-9999 does) books one piece too few at every wrap, as 65535 for
// a 16-bit counter does: warned of the same way (the ot-audit probe). A
// decimal modulus (1000, 100000) and 99 (a 2-digit count, not a piece
// counter's wrap anyone writes so) are not.
func TestDecimalRolloverSlipWarned(t *testing.T) {
	y := base + `      rollover: 9999
  - id: m2
    workcenter: WC2
    good_count:
      opcua: { server: plc, node: "ns=2;s=M2.Good" }
      rollover: 999
    scrap_count:
      opcua: { server: plc, node: "ns=2;s=M2.Scrap" }
      rollover: 100000
  - id: m3
    workcenter: WC3
    good_count:
      opcua: { server: plc, node: "ns=2;s=M3.Good" }
      rollover: 99
`
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		`w.yaml:15:17: machines[0].good_count.rollover: 9999 is the largest value of a 4-digit decimal counter, not its modulus (rollover is the number of values: 10000 for a counter that goes from 9999 to 0)`,
		`w.yaml:20:17: machines[1].good_count.rollover: 999 is the largest value of a 3-digit decimal counter, not its modulus (rollover is the number of values: 1000 for a counter that goes from 999 to 0)`)
}

// A " #" ends a plain YAML value: the rest of the line is a comment. A
// node id, topic or work-center code with " #" in it (a PLC tag "Press
// #1.Count", a topic "line #2/state") copied in without quotes loaded as
// its part before the " #", a node or topic that does not exist (the
// ot-audit probe): warned of at the "#", when no space follows it (as it
// does in a comment). A quoted value and a comment are not.
func TestHashEndingAPlainValueWarned(t *testing.T) {
	y := strings.Replace(base, `      opcua: { server: plc, node: "ns=2;s=M1.Good" }`, `      opcua:
        server: plc
        node: ns=2;s=Press #1.Count
    running:
      mqtt:
        broker: broker   # the plant's broker
        topic: plant/line #2/state
        field: "r#1"
    scrap_count:
      opcua: { server: plc, node: "ns=2;s=Press #1.Scrap" }  #no space`, 1)
	y = strings.Replace(y, "    workcenter: WC1\n", "    workcenter: WC-PRESS #1\n", 1)
	// A comment written without a space after its # is not a name's #.
	y = strings.Replace(y, "    client_id: pe-1\n", "    client_id: pe-1 #main broker\n", 1)
	wantWarnings(t, y,
		`w.yaml:16:26: machines[0].workcenter: a value ends at " #": YAML reads "#1" and the rest of the line as a comment, so the value is "WC-PRESS" (quote the value ("...") if the # is part of it)`,
		`w.yaml:20:28: machines[0].good_count.opcua.node: a value ends at " #": YAML reads "#1.Count" and the rest of the line as a comment, so the value is "ns=2;s=Press" (quote the value ("...") if the # is part of it)`,
		`w.yaml:24:27: machines[0].running.mqtt.topic: a value ends at " #": YAML reads "#2/state" and the rest of the line as a comment, so the value is "plant/line" (quote the value ("...") if the # is part of it)`)
}

// A JSON key with a space inside its name ("Good Parts", as Node-RED and
// gateways name them) is a field path's part; white space at either end of
// a part ("counters. good") is still a slip, refused (the ot-audit probe:
// "Good Parts" was refused with no way to read it).
func TestFieldPathWithSpaces(t *testing.T) {
	y := base + `    running:
      mqtt: { broker: broker, topic: m1/state, field: Machine State.Run Bit, timestamp_field: Time Stamp }
`
	if _, err := Parse("f.yaml", []byte(y)); err != nil {
		t.Fatalf("a key with a space: %v", err)
	}
	for _, f := range []string{"counters. good", "counters .good", `" good"`, `"good "`} {
		_, err := Parse("f.yaml", []byte(base+"    running:\n      mqtt: { broker: broker, topic: m1/state, field: "+f+" }\n"))
		if err == nil || !strings.Contains(err.Error(), "invalid field path") {
			t.Errorf("field %s: %v, want it refused", f, err)
		}
	}
}

// The file is not expanded: a ${NAME} or a value starting $NAME (as in a
// compose file or a shell) is taken as written — a work center "$WC" that
// Odoo lacks, a data_dir "$STATE_DIRECTORY/buf" made below the directory the
// agent starts in (the ot-audit probe). Warned of at the value; a $ inside
// a value otherwise (a node id "MAIN.$Count") is not.
func TestEnvironmentReferenceWarned(t *testing.T) {
	y := strings.Replace(base, "    workcenter: WC1\n", "    workcenter: $WC\n", 1)
	y = strings.Replace(y, "  database: prod\n", "  database: ${ODOO_DB:-prod}\n", 1)
	y = strings.Replace(y, `node: "ns=2;s=M1.Good"`, `node: "ns=2;s=MAIN.$Count"`, 1)
	// A topic of the broker's own ($aws/…: AWS IoT's device shadows) is no
	// reference; ${NAME} in a topic is.
	y += `    scrap_count: { mqtt: { broker: broker, topic: "$aws/things/press07/shadow/update", field: state.reported.scrap } }
    running: { mqtt: { broker: broker, topic: "plant/${LINE}/state", field: run } }
`
	wantWarnings(t, y,
		`w.yaml:4:13: odoo.database: "${ODOO_DB:-prod}" is taken as written: this file is not expanded (write the value itself; a password comes from password_file or password_env, the API key from api_key_file or PLANTEDGE_ODOO_API_KEY)`,
		`w.yaml:16:17: machines[0].workcenter: "$WC" is taken as written: this file is not expanded (write the value itself; a password comes from password_file or password_env, the API key from api_key_file or PLANTEDGE_ODOO_API_KEY)`,
		`w.yaml:20:47: machines[0].running.mqtt.topic: "plant/${LINE}/state" is taken as written: this file is not expanded (write the value itself; a password comes from password_file or password_env, the API key from api_key_file or PLANTEDGE_ODOO_API_KEY)`)
}

// A secret file's path that refers to the environment is warned of too,
// without its value: ${CREDENTIALS_DIRECTORY}/name (a unit file's way of
// naming a systemd credential) is taken as written, so the agent found no
// file; a relative password_file or api_key_file is what is looked up
// among the credentials, and the hint says so.
func TestSecretFileEnvironmentReferenceWarned(t *testing.T) {
	y := strings.Replace(base, "  api_key_file: /etc/plantedge/odoo-api-key\n", "  api_key_file: ${CREDENTIALS_DIRECTORY}/odoo-api-key\n", 1)
	y = strings.Replace(y, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    username: plc\n    password_file: $CREDENTIALS_DIRECTORY/plc-pw\n"+
		"    security_policy: Basic256Sha256\n    server_thumbprint: 3f2a9c0d4b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b\n"+
		"    cert_file: /etc/plantedge/c.pem\n    key_file: ${CREDENTIALS_DIRECTORY}/c.key\n", 1)
	y = strings.Replace(y, "    client_id: pe-1\n", "    client_id: pe-1\n    username: u\n    password_file: ${SECRETS_DIR}/mqtt\n", 1)
	wantWarnings(t, y,
		"w.yaml:6:17: odoo.api_key_file: $CREDENTIALS_DIRECTORY is taken as written: this file is not expanded (give the credential's name alone (api_key_file: odoo-api-key): a relative name is looked up in systemd's $CREDENTIALS_DIRECTORY (LoadCredential=) first)",
		"w.yaml:11:20: opcua[0].password_file: $CREDENTIALS_DIRECTORY is taken as written: this file is not expanded (give the credential's name alone (password_file: plc-pw): a relative name is looked up in systemd's $CREDENTIALS_DIRECTORY (LoadCredential=) first)",
		"w.yaml:15:15: opcua[0].key_file: $CREDENTIALS_DIRECTORY is taken as written: this file is not expanded (write the path of the file itself: only password_file and api_key_file are looked up among systemd's credentials)",
		`w.yaml:17:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`,
		"w.yaml:21:20: mqtt[0].password_file: refers to an environment variable and is taken as written (value not shown): this file is not expanded (write the file's path itself)")
}

// A security_policy written in another case ("none") is refused, and is no
// secure policy to warn of an unpinned certificate for: the warning told a
// plant on policy None to pin a certificate it never gets (the ot-audit
// probe).
func TestPolicyInAnotherCaseIsNotWarnedUnpinned(t *testing.T) {
	y := strings.Replace(base, "    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    security_policy: none\n", 1)
	_, err := Parse("w.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0].String(), `security_policy: invalid value "none"`) {
		t.Fatalf("policy none: %v", err)
	}
	for _, w := range ce.Warnings {
		if strings.Contains(w.Msg, "not pinned") {
			t.Errorf("warned: %s", w)
		}
	}
}

// A required key written with nothing after it ("workcenter:") is one
// problem, "required" with its hint, not that and "expected a string, got
// nothing" at the same place (the ot-audit probe: two lines for one slip).
// An optional one with nothing is still refused (field: with nothing would
// read the whole payload).
func TestRequiredKeyWithNothingIsOneProblem(t *testing.T) {
	y := strings.Replace(base, "    workcenter: WC1\n", "    workcenter:\n", 1)
	y = strings.Replace(y, `node: "ns=2;s=M1.Good"`, "node: ", 1)
	y += "    running: { mqtt: { broker: broker, topic: m1/state, field: } }\n"
	_, err := Parse("n.yaml", []byte(y))
	want := `n.yaml:16:16: machines[0].workcenter: required (the code of the machine's Odoo work center)
n.yaml:18:34: machines[0].good_count.opcua.node: required (the node id, e.g. "ns=2;s=Press07.GoodCount" (use plantedge browse))
n.yaml:19:63: machines[0].running.mqtt.field: expected a string, got nothing`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// A file a tool wrote on one line, flow style (YAML takes JSON's shape):
// 3,000 machines, 327 kB. The " #" check walked to each value's column
// from the line's start, quadratic in the line's length: this took more
// than two minutes (validate and run alike), 0.25 s now.
func TestOneLineFlowFileLoads(t *testing.T) {
	var b strings.Builder
	b.WriteString("{site: plant-1, odoo: {url: https://erp.example.com, database: prod, username: bot, api_key_file: /k}, mqtt: [{name: broker, url: tcp://127.0.0.1:1883, client_id: pe}], machines: [")
	for i := range 3000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{id: m%d, workcenter: WC%d, good_count: {mqtt: {broker: broker, topic: plant/m%d/state, field: good}}}", i, i, i)
	}
	b.WriteString("]} #1.x\n")
	c, err := Parse("f.yaml", []byte(b.String()))
	if err != nil || len(c.Machines) != 3000 || c.Machines[2999].Workcenter != "WC2999" {
		t.Fatalf("one-line file: %v", err)
	}
}

// A value that did not decode is one problem, not a second about the
// empty value it left (the ot-audit probe: two per element of a list of
// lists given as running_values).
func TestUndecodedValueIsOneProblem(t *testing.T) {
	y := base + "    running: { mqtt: { broker: broker, topic: m1/run, field: run }, running_values: [[1, 2], RUN] }\n"
	_, err := Parse("bad.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	if len(ce.Problems) != 1 || ce.Problems[0].String() != "bad.yaml:19:86: machines[0].running.running_values[0]: expected a string, got a list" {
		t.Errorf("problems:\n%v", err)
	}
}

// A problem in an anchor's text says which alias reached it: the line is
// the anchor's (where the text to mend is), but a machine written as
// "- *p1" or merging "<<: *press" is elsewhere, and the anchor's own
// machine may be fine (the ot-audit probe: "duplicate machine id" pointed
// at press-01's own line).
func TestProblemInAnAnchorSaysTheAlias(t *testing.T) {
	y := `site: plant-1
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: broker, url: tcp://127.0.0.1:1883, client_id: pe-1 }
x-press: &press
  workcenter: WC1
  running: { mqtt: { broker: broker, topic: t/run, field: run } }
  good_count: &gc { mqtt: { broker: broker, topic: t/good, field: good }, rolover: 10 }
machines:
  - &p1
    id: press-01
    workcenter: WC9
    good_count: { mqtt: { broker: broker, topic: p1/good, field: good } }
  - <<: *press
    id: press-02
  - *p1
  - id: press-04
    workcenter: WC4
    good_count: *gc
`
	_, err := Parse("a.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	var got []string
	for _, p := range ce.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`a.yaml:8:75: machines[1].good_count.rolover: unknown key, via *press at line 14 (did you mean "rollover"?)`,
		`a.yaml:8:75: machines[3].good_count.rolover: unknown key, via *gc at line 19 (did you mean "rollover"?)`,
		`a.yaml:11:9: machines[2].id: duplicate machine id "press-01", via *p1 at line 16 (also used by machines[0])`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A required key written with a list or a mapping where text belongs
// ("site: [plant-1]") is one problem, the type, not that and "required"
// at the same place: the key is there, and "required" sends the reader
// looking for a missing line (the spec audit: two lines for one slip, as
// the ot-audit found for a key written with nothing).
func TestRequiredKeyOfAnotherTypeIsOneProblem(t *testing.T) {
	y := strings.Replace(base, "site: plant-1", "site: [plant-1]", 1)
	y = strings.Replace(y, "    workcenter: WC1\n", "    workcenter: { code: WC1 }\n", 1)
	_, err := Parse("t.yaml", []byte(y))
	want := `t.yaml:1:7: site: expected a string, got a list
t.yaml:16:17: machines[0].workcenter: expected a string, got a mapping`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// An odoo.timeout above the default request_limit (2m) is said at
// odoo.timeout, the key written, not at an odoo.request_limit the file
// does not have (the spec audit: "odoo.request_limit: 2m0s is shorter than
// odoo.timeout 10m0s" at the line of odoo's url). Written both, the limit
// is the one said (as before).
func TestOdooTimeoutAboveTheDefaultRequestLimit(t *testing.T) {
	y := strings.Replace(base, "  username: bot\n", "  username: bot\n  timeout: 10m\n", 1)
	_, err := Parse("t.yaml", []byte(y))
	want := `t.yaml:6:12: odoo.timeout: 10m0s is longer than odoo.request_limit 2m0s, its default (Odoo's limit_time_real (120s unless its admin changed it): set request_limit to it, or a shorter timeout)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// A broker URL without its port is told the port of its own scheme:
// 8883 for TLS (ssl://, tls://, mqtts://), 1883 otherwise — the hint said
// tcp://…:1883 for every scheme, a plain-text port for a TLS broker (the
// spec audit).
func TestMQTTURLMissingPortHintKeepsTheScheme(t *testing.T) {
	for url, hint := range map[string]string{
		"ssl://broker.plant":   "e.g. ssl://broker.plant:8883",
		"mqtts://broker.plant": "e.g. mqtts://broker.plant:8883",
		"tcp://broker.plant":   "e.g. tcp://broker.plant:1883",
	} {
		y := strings.Replace(base, "tcp://127.0.0.1:1883", url, 1)
		_, err := Parse("t.yaml", []byte(y))
		want := `t.yaml:12:10: mqtt[0].url: missing port in "` + url + `" (` + hint + `)`
		if err == nil || err.Error() != want {
			t.Errorf("%s: got:\n%v\nwant:\n%s", url, err, want)
		}
	}
}

// A mapping or a list that did not decode (written as text, or an alias
// to no anchor) is one problem: not also "required" for each key it
// would have held, at the same line and column (the review: "odoo: https://erp…"
// was three problems at 4:7, "opcua: \"ns=2;s=G\"" three at one place, and
// a machine written "- *nope" two "required" at the machines: line).
func TestUndecodedMappingIsOneProblem(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"odoo as text", strings.Replace(base, "odoo:\n  url: https://erp.example.com\n  database: prod\n  username: bot\n  api_key_file: /etc/plantedge/odoo-api-key\n", "odoo: https://erp.example.com\n", 1),
			`t.yaml:2:7: odoo: expected a mapping, got a string "https://erp.example.com" (write key: value pairs indented under it)`},
		{"opcua ref as text", strings.Replace(base, `opcua: { server: plc, node: "ns=2;s=M1.Good" }`, `opcua: "ns=2;s=M1.Good"`, 1),
			`t.yaml:18:14: machines[0].good_count.opcua: expected a mapping, got a string "ns=2;s=M1.Good" (write key: value pairs indented under it)`},
		{"source entry as text", strings.Replace(base, "mqtt:\n", "  - plc2\nmqtt:\n", 1),
			`t.yaml:10:5: opcua[1]: expected a mapping, got a string "plc2" (write key: value pairs indented under it)`},
		{"machine an unknown alias", base + "  - *nope\n",
			"t.yaml:19:5: machines[1]: unknown alias *nope (define the anchor &nope before using it)"},
	} {
		_, err := Parse("t.yaml", []byte(c.yaml))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got:\n%v\nwant:\n%s", c.name, err, c.want)
		}
	}
}

// A secret read from the credentials directory is named by its path there
// when it is refused: "read secret pw: the file holds 2 lines" sent the
// technician to ./pw, the working directory's file of that name, which the
// agent had not read (the review: the file exists in both places).
func TestReadSecretFromCredentialsNamesItsPath(t *testing.T) {
	credDir, wd := t.TempDir(), t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	t.Chdir(wd)
	if err := os.WriteFile(filepath.Join(credDir, "mqtt-password"), []byte("one\ntwo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadSecret("mqtt-password")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(credDir, "mqtt-password")) {
		t.Errorf("only in the credentials directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(wd, "mqtt-password"), []byte("good\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ReadSecret("mqtt-password")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(credDir, "mqtt-password")) {
		t.Errorf("in both places: %v", err)
	}
}

// Only a name alone is looked up among the systemd credentials (their
// names hold no '/'): "../pw" read the file beside the credentials
// directory, and "./pw", written for the working directory's file, read a
// credential named pw (the review).
func TestReadSecretPathIsNotACredential(t *testing.T) {
	root := t.TempDir()
	credDir, wd := filepath.Join(root, "cred"), filepath.Join(root, "wd", "sub")
	for _, d := range []string{credDir, wd} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for p, v := range map[string]string{
		filepath.Join(credDir, "pw"): "credential", filepath.Join(root, "pw"): "beside-the-credentials",
		filepath.Join(wd, "pw"): "working-dir", filepath.Join(root, "wd", "pw"): "above-the-working-dir",
	} {
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	t.Chdir(wd)
	for name, want := range map[string]string{"pw": "credential", "./pw": "working-dir", "../pw": "above-the-working-dir"} {
		if got, err := ReadSecret(name); err != nil || got != want {
			t.Errorf("ReadSecret(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// A duplicate key is not a value that did not decode: the value kept (the
// first) is still checked, and its problem said (the review: since a value
// that did not decode is one problem, "workcenter: \"  \"" written twice
// was only "duplicate key", and fixing that left a "required" unsaid).
func TestDuplicateKeyKeepsTheKeptValuesProblem(t *testing.T) {
	y := strings.Replace(base, "    workcenter: WC1\n", "    workcenter: \"  \"\n    workcenter: WC1\n", 1)
	_, err := Parse("t.yaml", []byte(y))
	want := `t.yaml:16:17: machines[0].workcenter: required (the code of the machine's Odoo work center)
t.yaml:17:5: machines[0].workcenter: duplicate key (already set at line 16)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// An anchor name defined again takes effect from there on: each alias
// takes the last definition before it, never a later one (YAML 1.2, 3.2.2.2).
func TestAliasTakesTheLastAnchorBeforeIt(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	for i := 2; i <= 4; i++ {
		fmt.Fprintf(&b, "  - id: &a m%d\n    workcenter: *a\n    good_count: { opcua: { server: plc, node: \"ns=2;s=M%d.Good\" } }\n", i, i)
	}
	b.WriteString("  - id: m5\n    workcenter: *a\n    good_count: { opcua: { server: plc, node: \"ns=2;s=M5.Good\" } }\n")
	c, err := Parse("a.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range c.Machines[1:] {
		got = append(got, m.ID+"@"+m.Workcenter)
	}
	if want := "m2@m2 m3@m3 m4@m4 m5@m4"; strings.Join(got, " ") != want {
		t.Errorf("machines = %s, want %s", strings.Join(got, " "), want)
	}
}

// BenchmarkParseAnchorRedefined checks a file of 6,000 machines, each
// defining the anchor &a again and using it: against the same file
// without anchors, the look-up of the anchor before each alias must not
// make the check quadratic (it scanned every definition for each alias).
func BenchmarkParseAnchorRedefined(b *testing.B) {
	for _, anchors := range []bool{false, true} {
		var sb strings.Builder
		sb.WriteString(base)
		for i := 2; i <= 6000; i++ {
			id, wc := fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i)
			if anchors {
				id, wc = "&a "+id, "*a"
			}
			fmt.Fprintf(&sb, "  - id: %s\n    workcenter: %s\n    good_count: { opcua: { server: plc, node: \"ns=2;s=M%d.Good\" } }\n", id, wc, i)
		}
		data := []byte(sb.String())
		b.Run(fmt.Sprintf("anchors=%t", anchors), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse("a.yaml", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// quiet_after under good_count: a duration, 0 or off (never), absent (the
// default); a limit of seconds notes a machine between its pieces, and
// one without a running signal is never noted: worth a word.
func TestQuietAfter(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want *OffDuration
	}{{"", nil}, {"45m", ptrTo(OffDuration(45 * time.Minute))}, {"off", ptrTo(OffDuration(0))}, {"OFF", ptrTo(OffDuration(0))}, {"0", ptrTo(OffDuration(0))}, {"2h", ptrTo(OffDuration(2 * time.Hour))},
		// YAML's false reads as off to a person: not refused (ux45).
		{"false", ptrTo(OffDuration(0))}, {"False", ptrTo(OffDuration(0))}} {
		y := base + "    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n"
		if tc.v != "" {
			y = strings.Replace(y, "      opcua: { server: plc, node: \"ns=2;s=M1.Good\" }", "      opcua: { server: plc, node: \"ns=2;s=M1.Good\" }\n      quiet_after: "+tc.v, 1)
		}
		c, err := Parse("q.yaml", []byte(y))
		if err != nil {
			t.Fatalf("%q: %v", tc.v, err)
		}
		if got := c.Machines[0].GoodCount.QuietAfter; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("quiet_after %q: %v, want %v", tc.v, got, tc.want)
		}
	}
	unused := `w.yaml:11:11: mqtt[0].name: MQTT broker "broker" is not used by any machine (remove it or map a signal to it)`
	withQuiet := func(v string) string {
		return strings.Replace(base, `node: "ns=2;s=M1.Good" }`, `node: "ns=2;s=M1.Good" }`+"\n      quiet_after: "+v, 1)
	}
	wantWarnings(t, withQuiet("45m"), unused,
		`w.yaml:19:20: machines[0].good_count.quiet_after: has no effect: the machine has no running signal (the note is of a machine shown running)`)
	wantWarnings(t, withQuiet("30s")+"    running: { opcua: { server: plc, node: \"ns=2;s=M1.Run\" } }\n", unused,
		`w.yaml:19:20: machines[0].good_count.quiet_after: 30s is shorter than the time between two pieces of most machines: the note would come between pieces (a little longer than the machine's longest cycle, e.g. 45m for a piece every 20 to 40 minutes; off for never)`)
	wantWarnings(t, withQuiet("off"), unused) // off: nothing to say
}

func ptrTo[T any](v T) *T { return &v }

// A factor written with nothing after it (its value forgotten, or
// commented out: a counter in grams whose 0.001 was never filled in)
// counts as 1: a thousand times the kilograms. Warned, like an empty
// signal, so that a file that loaded before still does (mapping46).
func TestEmptyFactorWarned(t *testing.T) {
	y := strings.Replace(base, "      opcua: { server: plc", "      factor:   # 0.001: grams, order in kg\n      opcua: { server: plc", 1)
	y = strings.Replace(y, "mqtt:\n  - name: broker\n    url: tcp://127.0.0.1:1883\n    client_id: pe-1\n", "", 1)
	wantWarnings(t, y,
		"w.yaml:14:14: machines[0].good_count.factor: empty: read as 1, as if it were left out (give the units one step of the counter makes, e.g. 0.001, or remove the key)")
	c, err := Parse("w.yaml", []byte(y))
	if err != nil || c.Machines[0].GoodCount.Per() != 1 {
		t.Errorf("an empty factor: %v", err)
	}
}

// A machine block copied and its running source left as it was: the
// copy's work center gets the other machine's stops as its downtime, and
// its own are never booked. Warned, as a copied counter is; a line's run
// bit shared on purpose is said to be fine (mapping46).
func TestSharedRunningWarned(t *testing.T) {
	y := strings.Replace(base, "machines:\n", `machines:
  - id: m0
    workcenter: WC0
    good_count: { mqtt: { broker: broker, topic: p/m0, field: good } }
    running: { mqtt: { broker: broker, topic: p/m0, field: run } }
  - id: m9
    workcenter: WC9
    good_count: { mqtt: { broker: broker, topic: p/m9, field: good } }
    running: { mqtt: { broker: broker, topic: p/m0, field: run } }
`, 1)
	wantWarnings(t, y,
		`w.yaml:22:14: machines[1].running: reads the same run state as m0 running (MQTT broker topic p/m0 field run): the stops of one are booked as the other's downtime too (a copied entry? point it at this machine's own; if one run signal stands for both, a line's, this is right)`)
}

// One machine-state word read by two machines, each running on its own
// value (a twin-station cell's "active station": 1 the first, 2 the
// second) is not a copied run state: their stops differ, and no warning
// says they are booked as each other's. The same values, in any order,
// are a copy (review46b).
func TestSharedStateWordWithOwnRunningValuesNotWarned(t *testing.T) {
	y := strings.Replace(base, "machines:\n", `machines:
  - id: m0
    workcenter: WC0
    good_count: { mqtt: { broker: broker, topic: p/m0, field: good } }
    running: { mqtt: { broker: broker, topic: cell/state, field: station }, running_values: ["1"] }
  - id: m9
    workcenter: WC9
    good_count: { mqtt: { broker: broker, topic: p/m9, field: good } }
    running: { mqtt: { broker: broker, topic: cell/state, field: station }, running_values: ["2"] }
  - id: m8
    workcenter: WC8
    good_count: { mqtt: { broker: broker, topic: p/m8, field: good } }
    running: { mqtt: { broker: broker, topic: cell/state, field: station } }
`, 1)
	wantWarnings(t, y)
	y = strings.Replace(base, "machines:\n", `machines:
  - id: m0
    workcenter: WC0
    good_count: { mqtt: { broker: broker, topic: p/m0, field: good } }
    running: { mqtt: { broker: broker, topic: cell/state, field: state }, running_values: [EXECUTE, COMPLETING] }
  - id: m9
    workcenter: WC9
    good_count: { mqtt: { broker: broker, topic: p/m9, field: good } }
    running: { mqtt: { broker: broker, topic: cell/state, field: state }, running_values: [COMPLETING, EXECUTE] }
`, 1)
	wantWarnings(t, y,
		`w.yaml:22:14: machines[1].running: reads the same run state as m0 running (MQTT broker topic cell/state field state): the stops of one are booked as the other's downtime too (a copied entry? point it at this machine's own; if one run signal stands for both, a line's, this is right)`)
}

// Keys an OT engineer reaches for to say a counter's unit or scale (a
// SCADA tag's "scale", "multiplier", "unit: kg"): the hint names factor,
// not the list of known keys (mapping46).
func TestUnitAndScaleKeysPointToFactor(t *testing.T) {
	for key, want := range map[string]string{
		"unit":       "bad.yaml:18:7: machines[0].good_count.unit: unknown key (the agent reads no unit: a counter counts in the work order's unit of measure, times its factor, e.g. factor: 0.001 for a counter in grams on an order in kg)",
		"uom":        "bad.yaml:18:7: machines[0].good_count.uom: unknown key (the agent reads no unit: a counter counts in the work order's unit of measure, times its factor, e.g. factor: 0.001 for a counter in grams on an order in kg)",
		"scale":      `bad.yaml:18:7: machines[0].good_count.scale: unknown key (did you mean "factor"? the units one step of the counter makes)`,
		"multiplier": `bad.yaml:18:7: machines[0].good_count.multiplier: unknown key (did you mean "factor"? the units one step of the counter makes)`,
	} {
		y := strings.Replace(base, "      opcua: { server: plc", "      "+key+": 0.001\n      opcua: { server: plc", 1)
		_, err := Parse("bad.yaml", []byte(y))
		if err == nil || err.Error() != want {
			t.Errorf("%s: got\n%v\nwant\n%s", key, err, want)
		}
		// Meant: validate shows the value it holds (unit: kg), not masked
		// as an unknown key's that may be a misspelt secret's.
		var ce *Error
		if errors.As(err, &ce) && (len(ce.Problems) != 1 || ce.Problems[0].Meant != "factor") {
			t.Errorf("%s: problems %+v, want one meaning factor", key, ce.Problems)
		}
	}
}

// A field misspelt (or left out) on one signal of a gateway topic that
// other signals read with a field is one problem, at that signal: it was
// one at every signal written right (the OT probe: 5 problems on correct
// lines for one "feild:"). When most signals of a topic read it bare, the
// ones with a field are the odd ones.
func TestTopicShapeReportedAtTheOddSignal(t *testing.T) {
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"mqtt:\n  - { name: b, url: \"tcp://127.0.0.1:1883\", client_id: pe }\nmachines:\n"
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"one field misspelt among JSON signals", head +
			"  - id: m1\n    workcenter: W1\n" +
			"    good_count: { mqtt: { broker: b, topic: gw, feild: m1.good } }\n" +
			"    running: { mqtt: { broker: b, topic: gw, field: m1.run } }\n" +
			"  - id: m2\n    workcenter: W2\n" +
			"    good_count: { mqtt: { broker: b, topic: gw, field: m2.good } }\n" +
			"    running: { mqtt: { broker: b, topic: gw, field: m2.run } }\n",
			[]string{
				`t.yaml:8:25: machines[0].good_count.mqtt.field: topic "gw" is read as a bare value here but as JSON with a field by machines[0].running.mqtt and 2 more (give this signal a field: the path of its value in the JSON payload (is field misspelt, or left out?))`,
				`t.yaml:8:49: machines[0].good_count.mqtt.feild: unknown key (did you mean "field"?)`,
			}},
		{"one field on a bare topic", head +
			"  - id: m1\n    workcenter: W1\n" +
			"    good_count: { mqtt: { broker: b, topic: c } }\n" +
			"  - id: m2\n    workcenter: W2\n" +
			"    good_count: { mqtt: { broker: b, topic: c } }\n" +
			"    running: { mqtt: { broker: b, topic: c, field: run } }\n",
			[]string{
				`t.yaml:12:52: machines[1].running.mqtt.field: topic "c" is read as JSON with a field here but as a bare value by machines[0].good_count.mqtt and 1 more (a topic carries either a bare value or JSON: give every signal on a JSON topic a field, or none on a bare one)`,
			}},
	} {
		wantProblems(t, c.name, c.yaml, c.want)
	}
}

// A node id in another tool's form or in the wrong shape is refused with
// the id it was meant to be (the OT probe: these got only the general
// "write ns=<index>;s=<name>"); one that names nothing else keeps the
// general hint.
func TestNodeIDMeantForm(t *testing.T) {
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"opcua:\n  - { name: plc, endpoint: \"opc.tcp://127.0.0.1:4840\" }\nmachines:\n  - id: m1\n    workcenter: W1\n"
	for _, c := range []struct{ node, want string }{
		{"ns=2,i=5002", `invalid node id "ns=2,i=5002" (did you mean "ns=2;i=5002"? a ; separates the namespace from the identifier`},
		{"NS=2,S=Press.Good", `(did you mean "ns=2;s=Press.Good"? a ; separates`},
		{"NS2|Numeric|5002", `(did you mean "ns=2;i=5002"? NS2|String|… is how UaExpert shows a node id`},
		{"NS3|String|Line1.Press02.Good", `(did you mean "ns=3;s=Line1.Press02.Good"? NS2|String|…`},
		{"ns=2;Press02.Good", `(did you mean "ns=2;s=Press02.Good"? the identifier is written with its type`},
		{"ns=2;5002", `(did you mean "ns=2;i=5002"? the identifier is written with its type`},
		{"nsu=urn:plant:weld;Cell1.Good", `(did you mean "nsu=urn:plant:weld;s=Cell1.Good"?`},
		{"i=5002;ns=2", `(did you mean "ns=2;i=5002"? the namespace comes first`},
		{"ns=2; s=Press.Good", `(did you mean "ns=2;s=Press.Good"? no white space around ; and =`},
		{"ns=2;i=Press.Run", `(did you mean "ns=2;s=Press.Run"? i= takes a number; a name is written s=`},
		{"\u201cns=2;s=Press.Good\u201d", `(did you mean "ns=2;s=Press.Good"? typographic quotes are not YAML's`},
		{"ns=2;i=5002x", `(did you mean "ns=2;s=5002x"? i= takes a number`},
		{"Press02.Good", `invalid node id "Press02.Good" (write ns=<index>;s=<name> or ns=<index>;i=<number>`},
		{"ns=2;g=not-a-guid", `invalid node id "ns=2;g=not-a-guid" (write ns=<index>;s=<name>`},
	} {
		_, err := Parse("t.yaml", []byte(head+"    good_count: { opcua: { server: plc, node: \""+c.node+"\" } }\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", c.node, err, c.want)
		}
	}
	// Valid in namespace 0, a warning, whose hint puts the namespace first
	// rather than in front of it.
	c, err := Parse("t.yaml", []byte(head+"    good_count: { opcua: { server: plc, node: \"s=Press.Good;ns=2\" } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ws []string
	for _, w := range c.Warnings {
		ws = append(ws, w.String())
	}
	if want := `e.g. "ns=2;s=Press.Good" (plantedge browse`; !strings.Contains(strings.Join(ws, "\n"), want) {
		t.Errorf("warnings:\n%s\nwant %q", strings.Join(ws, "\n"), want)
	}
}

// A number written as arithmetic or with its digits grouped is refused
// with the number to write (the OT probe: "rollover: 2^32" was told only
// the range of a whole number).
func TestNumberWrittenAsArithmeticHint(t *testing.T) {
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"opcua:\n  - { name: plc, endpoint: \"opc.tcp://127.0.0.1:4840\" }\nmachines:\n  - id: m1\n    workcenter: W1\n" +
		"    good_count:\n      opcua: { server: plc, node: \"ns=2;s=Good\" }\n"
	for _, c := range []struct{ value, want string }{
		{"2^32", `t.yaml:10:17: machines[0].good_count.rollover: expected a whole number from 0 to 18446744073709551615, got a string "2^32" (YAML does no arithmetic: write 4294967296)`},
		{"2**16", `got a string "2**16" (YAML does no arithmetic: write 65536)`},
		{"1<<16", `got a string "1<<16" (YAML does no arithmetic: write 65536)`},
		{"10^4", `got a string "10^4" (YAML does no arithmetic: write the number itself)`},
		{"65,536", `got a string "65,536" (write the digits alone: 65536)`},
		{"4 294 967 296", `got a string "4 294 967 296" (write the digits alone: 4294967296)`},
	} {
		_, err := Parse("t.yaml", []byte(head+"      rollover: "+c.value+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", c.value, err, c.want)
		}
	}
}

// A signal naming a source of the other kind is told so, with the form to
// write (the OT probe: "unknown OPC UA server" listed the servers only).
func TestSourceOfTheOtherKindNamed(t *testing.T) {
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n" +
		"opcua:\n  - { name: plc, endpoint: \"opc.tcp://127.0.0.1:4840\" }\n" +
		"mqtt:\n  - { name: broker, url: \"tcp://127.0.0.1:1883\", client_id: pe }\nmachines:\n  - id: m1\n    workcenter: W1\n"
	for _, c := range []struct{ sig, want string }{
		{"good_count: { opcua: { server: broker, node: \"ns=2;s=Good\" } }",
			`t.yaml:10:36: machines[0].good_count.opcua.server: unknown OPC UA server "broker" ("broker" is an MQTT broker: read it with mqtt: { broker: broker, topic: …, field: … }; defined: plc)`},
		{"running: { mqtt: { broker: plc, topic: m1/run } }",
			`t.yaml:10:32: machines[0].running.mqtt.broker: unknown MQTT broker "plc" ("plc" is an OPC UA server: read it with opcua: { server: plc, node: … }; defined: broker)`},
		{"running: { mqtt: { broker: brokr, topic: m1/run } }",
			`t.yaml:10:32: machines[0].running.mqtt.broker: unknown MQTT broker "brokr" (defined: broker)`},
		// Names differing only in case: said, as the names look alike.
		{"good_count: { opcua: { server: PLC, node: \"ns=2;s=Good\" } }",
			`t.yaml:10:36: machines[0].good_count.opcua.server: unknown OPC UA server "PLC" (defined: plc; names are case-sensitive: "PLC" is not "plc")`},
		{"running: { mqtt: { broker: Broker, topic: m1/run } }",
			`t.yaml:10:32: machines[0].running.mqtt.broker: unknown MQTT broker "Broker" (defined: broker; names are case-sensitive: "Broker" is not "broker")`},
	} {
		_, err := Parse("t.yaml", []byte(head+"    "+c.sig+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", c.sig, err, c.want)
		}
	}
}

// A sources section that did not decode at all (one broker written
// without its "- ") is one problem: not also an unknown broker or server
// at every signal that names one (the OT probe: 13 more problems under the
// one to fix).
func TestUndecodedSourcesSectionIsOneProblem(t *testing.T) {
	head := "site: s\nodoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }\n"
	sigs := "machines:\n  - id: m1\n    workcenter: W1\n" +
		"    good_count: { mqtt: { broker: broker, topic: m1/good } }\n" +
		"    running: { opcua: { server: plc, node: \"ns=2;s=Run\" } }\n" +
		"    scrap_count: { mqtt: { broker: brokr, topic: m1/scrap } }\n"
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"mqtt as a mapping", head + "opcua:\n  - { name: plc, endpoint: \"opc.tcp://127.0.0.1:4840\" }\n" +
			"mqtt:\n  name: broker\n  url: \"tcp://127.0.0.1:1883\"\n  client_id: pe\n" + sigs,
			[]string{`t.yaml:6:3: mqtt: expected a list, got a mapping (start each entry with "- ")`}},
		{"opcua as a mapping", head + "opcua:\n  name: plc\n  endpoint: \"opc.tcp://127.0.0.1:4840\"\n" +
			"mqtt:\n  - { name: broker, url: \"tcp://127.0.0.1:1883\", client_id: pe }\n" + sigs,
			[]string{
				`t.yaml:4:3: opcua: expected a list, got a mapping (start each entry with "- ")`,
				// The broker section decoded: its misspelt name is still said.
				`t.yaml:13:36: machines[0].scrap_count.mqtt.broker: unknown MQTT broker "brokr" (defined: broker)`,
			}},
	} {
		wantProblems(t, c.name, c.yaml, c.want)
	}
}

// A quote left open is reported by the parser where the next quote closes
// it, lines further on: the hint names the quote to close (the OT probe:
// only "check the indentation of this line and the next").
func TestUnclosedQuoteNamed(t *testing.T) {
	yaml := base + "  - id: m2\n    workcenter: WC2\n    good_count:\n      opcua: { server: plc, node: \"ns=2;s=M2.Good }\n    running:\n      opcua: { server: plc, node: \"ns=2;s=M2.Run\" }\n"
	_, err := Parse("t.yaml", []byte(yaml))
	want := `t.yaml:24:36: yaml: ',' or '}' must be specified (close the quote opened at line 22 column 35: YAML reads a quoted value on to the next quote)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	// A quote closed on its line, and one in a comment, are no such quote.
	yaml = base + "  - id: m2 # the 16\" press\n    workcenter: \"WC2\"\n    good_count: [\n"
	if _, err := Parse("t.yaml", []byte(yaml)); err == nil || strings.Contains(err.Error(), "close the quote") {
		t.Errorf("got %v, want a syntax error without a quote named", err)
	}
}
