package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/internal/nettest"
	"github.com/plantedge/plantedge/internal/sptest"
)

// TestValidateMQTT subscribes to the configured topics on a running broker:
// retained messages that fit pass, a missing field and a text counter are
// problems at their place in the file, a quiet topic is not checked, and an
// unreachable broker is a problem.
func TestValidateMQTT(t *testing.T) {
	b := brokerRetaining(t, map[string]string{
		"p1/state":    `{"run": true, "reason": "JAM", "ts": "2026-11-30T08:00:00Z"}`,
		"p1/counters": `{"good": 1200, "scrap": 3}`,
		"p2/counters": `{"good": "many"}`,
		"p4/state":    `{"state": "EXECUTE"}`,
	})
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`site: test
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
  - id: p4
    workcenter: WC4
    running: { mqtt: { broker: b, topic: p4/state, field: state }, running_values: [EXECUTE] }
`, dir, b.URL()))
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
		// A state text with running_values (the review: refused as a run bit).
		`mqtt b: p4 running: p4/state field state: OK`,
		fmt.Sprintf("mqtt: problem: %s:6:", path),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A live message whose time is hours off this machine's clock (a gateway
// sending local time as UTC) is warned of at timestamp_field; a retained
// one, however old, is not (the tz probe: OK for both of a 5-hour and a
// 1-hour offset). A time it cannot read is a problem at timestamp_field,
// not at field.
func TestValidateMQTTSourceClock(t *testing.T) {
	b := brokerRetaining(t, map[string]string{"p1/state": `{"run": true, "ts": "2026-11-30T08:00:00Z"}`})
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test }
machines:
  - id: p1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: p1/state, field: run, timestamp_field: ts } }
  - id: p2
    workcenter: WC2
    running: { mqtt: { broker: b, topic: p2/state, field: run, timestamp_field: ts } }
  - id: p3
    workcenter: WC3
    running: { mqtt: { broker: b, topic: p3/state, field: run, timestamp_field: ts } }
  - id: p4
    workcenter: WC4
    running: { mqtt: { broker: b, topic: p4/state, field: run, timestamp_field: ts } }
`, dir, b.URL()))
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			now := time.Now()
			for topic, ts := range map[string]string{
				"p2/state": now.Add(-5 * time.Hour).UTC().Format(time.RFC3339),
				"p3/state": "yesterday",
				"p4/state": now.UTC().Format(time.RFC3339),
			} {
				_ = b.Publish(topic, fmt.Appendf(nil, `{"run": true, "ts": %q}`, ts), false, 0)
			}
		}
	}()
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	close(done)
	if exitCode(err) != 1 || err.Error() != "mqtt: 1 problem" {
		t.Errorf("err = %v (code %d), want 1 problem", err, exitCode(err))
	}
	for _, want := range []string{
		`mqtt b: p1 running: p1/state field run: OK`,
		fmt.Sprintf("mqtt: warning: %s:12:81: machines[1].running.mqtt.timestamp_field: p2/state field run: the time the message carries", path),
		"is 5h0m0s behind this machine's clock",
		fmt.Sprintf("mqtt: problem: %s:15:81: machines[2].running.mqtt.timestamp_field: p3/state field run: timestamp \"yesterday\"", path),
		`mqtt b: p4 running: p4/state field run: OK`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "this machine's clock") != 1 {
		t.Errorf("want one clock warning:\n%s", out)
	}
}

// brokerRetaining starts a broker holding the retained messages given by
// topic.
func brokerRetaining(t *testing.T, retained map[string]string) *mqtttest.Broker {
	t.Helper()
	b, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	for topic, payload := range retained {
		if err := b.Publish(topic, []byte(payload), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// writeConfig writes y as dir/test.yaml and returns its path.
func writeConfig(t *testing.T, dir, y string) string {
	t.Helper()
	path := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Sparkplug B signals: validate --mqtt waits for a BIRTH or DATA that
// names the metric and shows its decoded value; a value its signal cannot
// use, or a payload that is not Sparkplug B, is a problem at field.
func TestValidateMQTTSparkplug(t *testing.T) {
	b := brokerRetaining(t, nil)
	for topic, p := range map[string][]byte{
		// Retained here so that the check sees them at once; an edge
		// node's BIRTH comes at its (re)start.
		"spBv1.0/plant/DBIRTH/edge1/press1": sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
			{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(-2)},
			{Name: "State", Alias: 2, HasAlias: true, Datatype: sptest.String, Value: "many"},
		}}.Encode(),
		// A device's topic: mochi sends no retained message of the
		// filter's parent level (spBv1.0/plant/NDATA/edge2 for
		// spBv1.0/plant/+/edge2/#, the filter validate subscribes).
		"spBv1.0/plant/DDATA/edge2/dev": []byte(`{"good": 3}`),
	} {
		if err := b.Publish(topic, p, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test }
machines:
  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Good }, rollover: 4294967296 }
    scrap_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State } }
  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge2/dev, field: Good } }
  - id: p3
    workcenter: WC3
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/NDATA/edge3, field: Good } }
`, dir, b.URL()))
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	if exitCode(err) != 1 || err.Error() != "mqtt: 2 problems" {
		t.Errorf("err = %v (code %d), want 2 problems", err, exitCode(err))
	}
	for _, want := range []string{
		`mqtt b: p1 good_count: spBv1.0/plant/DDATA/edge1/press1 metric Counters/Good: OK (-2, from spBv1.0/plant/DBIRTH/edge1/press1)`,
		fmt.Sprintf(`mqtt: problem: %s:10:`, path),
		`machines[0].scrap_count.mqtt.field: spBv1.0/plant/DDATA/edge1/press1 metric State: "many" is not a number`,
		fmt.Sprintf(`mqtt: problem: %s:13:`, path),
		`malformed Sparkplug B payload`,
		`mqtt b: p3 good_count: spBv1.0/plant/NDATA/edge3 metric Good: no BIRTH or DATA naming it within 5s, not checked`,
		`mqtt b: sparkplug_rebirth off: after the agent's start or reconnect, DATA by alias waits for the edge node's next BIRTH`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A BIRTH heard that does not carry the configured metric is a problem (a
// typo in field), with the names it carries that are close; validate
// subscribes the edge node's filter, as the agent does, so an ACL that
// grants the DATA and BIRTH topics only is found out.
func TestValidateMQTTSparkplugTypoAndACL(t *testing.T) {
	b := brokerRetaining(t, nil)
	p := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good Parts", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(5)},
		{Name: "State/Running", Alias: 2, HasAlias: true, Datatype: sptest.Boolean, Value: true},
	}}.Encode()
	if err := b.Publish("spBv1.0/plant/DBIRTH/edge1/press1", p, true, 1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test, sparkplug_rebirth: true }
machines:
  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/GoodParts } }
`, dir, b.URL()))
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	if exitCode(err) != 1 {
		t.Errorf("err = %v (code %d), want a problem", err, exitCode(err))
	}
	if on := "mqtt b: sparkplug_rebirth on: the agent asks an edge node for its BIRTH (NCMD Node Control/Rebirth to spBv1.0/<group>/NCMD/<edge node>) when it cannot read its DATA by alias; the broker's ACL must let client pe-test publish there"; !strings.Contains(out, on) {
		t.Errorf("output lacks %q:\n%s", on, out)
	}
	want := `machines[0].good_count.mqtt.field: spBv1.0/plant/DDATA/edge1/press1 metric Counters/GoodParts: the BIRTH heard on spBv1.0/plant/DBIRTH/edge1/press1 does not carry it: did you mean "Counters/Good Parts"`
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	b.DenyRead("spBv1.0/plant/+/edge1/#", true)
	out, _, err = runValidate(t, "-c", path, "--mqtt")
	if exitCode(err) != 1 || !strings.Contains(out, "the broker refused the subscription to spBv1.0/plant/+/edge1/#") {
		t.Errorf("err = %v; the agent's filter refused, not said:\n%s", err, out)
	}
}

// sparkplug_certificates: validate subscribes to the BIRTH certificates as
// the agent does, checks the metric against one as against a BIRTH, and
// says how many it heard; none heard is a warning (the broker is not
// Sparkplug aware), a refused subscription a problem.
func TestValidateMQTTSparkplugCertificates(t *testing.T) {
	b := brokerRetaining(t, nil)
	p := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(5)},
		{Name: "State/Running", Alias: 2, HasAlias: true, Datatype: sptest.Boolean, Value: true},
	}}.Encode()
	if err := b.Publish("$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/press1", p, true, 1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := func(device string) string {
		return writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: %q, client_id: pe-test, sparkplug_certificates: true }
machines:
  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/%s, field: Counters/Good } }
    running: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/%s, field: State/Running } }
`, dir, b.URL(), device, device))
	}
	path := config("edge1/press1")
	out, _, err := runValidate(t, "-c", path, "--mqtt")
	if err != nil {
		t.Errorf("err = %v:\n%s", err, out)
	}
	for _, want := range []string{
		`mqtt b: p1 good_count: spBv1.0/plant/DDATA/edge1/press1 metric Counters/Good: OK (5, from $sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/press1)`,
		`mqtt b: sparkplug_certificates on: 1 BIRTH certificate heard`,
		`mqtt b: sparkplug_rebirth off: the agent never asks an edge node for its BIRTH; DATA by alias that no BIRTH certificate names waits`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Refused: the problem names the filters refused, each once, however
	// many signals read the edge node (the review: all of them, again for
	// every signal).
	b.DenyRead("$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/+", true)
	out, _, err = runValidate(t, "-c", path, "--mqtt")
	if want := "mqtt[0].sparkplug_certificates: b: the broker refused the subscription to the BIRTH certificates ($sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/+)"; exitCode(err) != 1 || !strings.Contains(out, want) {
		t.Errorf("err = %v; output lacks %q:\n%s", err, want, out)
	}

	path = config("edge2/press1")
	out, _, err = runValidate(t, "-c", path, "--mqtt")
	if want := "mqtt: warning: " + path + ":5:"; err != nil || !strings.Contains(out, want) || !strings.Contains(out, "no BIRTH certificate of the edge nodes read came within") {
		t.Errorf("err = %v; output lacks the warning at %q:\n%s", err, want, out)
	}
}

// A broker that refuses the login (CONNACK "not authorized" or "bad user
// name or password": a wrong password, an account removed) is a problem
// at the broker's username, pointing at the password, as validate --opcua
// says of a server refusing its user — not at the url, which is fine: the
// broker answered. Without a username the problem stays at the url and
// says the broker wants a login. Both for a plain topic and for
// Sparkplug B (its own listener).
func TestValidateMQTTLoginRefused(t *testing.T) {
	b, err := mqtttest.Start(fmt.Sprintf("127.0.0.1:%d", nettest.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.RequireLogin("line-reader", "right-password")
	t.Setenv("PE_TEST_VALIDATE_MQTT_PASSWORD", "changed-password")
	for _, tc := range []struct {
		name, login, signal string
		want                *regexp.Regexp
	}{
		{"user refused", "    username: line-reader\n    password_env: PE_TEST_VALIDATE_MQTT_PASSWORD\n",
			"good_count: { mqtt: { broker: b, topic: p1/counters, field: good } }",
			regexp.MustCompile(`^mqtt: problem: \S+:8:15: mqtt\[0\]\.username: b: the broker refused user line-reader: connect tcp://127\.0\.0\.1:\d+: not Authorized \(.*password_file or password_env`)},
		{"user refused, Sparkplug B", "    username: line-reader\n    password_env: PE_TEST_VALIDATE_MQTT_PASSWORD\n",
			"good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Good } }",
			regexp.MustCompile(`^mqtt: problem: \S+:8:15: mqtt\[0\]\.username: b: the broker refused user line-reader: connect tcp://127\.0\.0\.1:\d+: not Authorized \(.*password_file or password_env`)},
		{"no login", "",
			"good_count: { mqtt: { broker: b, topic: p1/counters, field: good } }",
			regexp.MustCompile(`^mqtt: problem: \S+:6:10: mqtt\[0\]\.url: b: the broker wants a login \(it refused a connection without one\): connect tcp://127\.0\.0\.1:\d+: not Authorized \(.*set username and password_file`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeConfig(t, dir, fmt.Sprintf(`site: test
data_dir: %s
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - name: b
    url: %q
    client_id: pe-test
%smachines:
  - id: p1
    workcenter: WC1
    %s
`, dir, b.URL(), tc.login, tc.signal))
			refused := b.LoginsRefused()
			out, _, err := runValidate(t, "-c", path, "--mqtt")
			if exitCode(err) != 1 || err.Error() != "mqtt: 1 problem" {
				t.Errorf("err = %v (code %d), want 1 problem", err, exitCode(err))
			}
			var problem string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "mqtt: problem: ") {
					problem = l
				}
			}
			if !tc.want.MatchString(problem) {
				t.Errorf("the problem\n%s\ndoes not match %s; the output:\n%s", problem, tc.want, out)
			}
			if b.LoginsRefused() == refused {
				t.Errorf("the broker refused no login")
			}
		})
	}
}
