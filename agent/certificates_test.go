package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

const certificatesMetric = `plantedge_sparkplug_certificates_total{source="broker"}`

// With sparkplug_certificates on a Sparkplug-aware broker, the agent reads
// DATA by alias from its start, by the alias map of the BIRTH certificate
// the broker kept: nothing waits for a BIRTH, no rebirth is asked for. The
// certificate's values are not counted (they may be old): the counter
// counts from its first DATA. Switched on by a reload, it takes effect at
// once: the source subscribes to the certificates and reads the map.
func TestSparkplugCertificates(t *testing.T) {
	t.Parallel()
	p := sparkplugPlant(t)
	if err := p.broker.SparkplugAware(); err != nil {
		t.Fatal(err)
	}
	// The edge node was born before the agent first started: its BIRTHs
	// are in the broker's certificates only.
	spBirths(p, 0, 1000, 1, 2)
	p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_certificates: true\n")
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}, {Alias: 2, HasAlias: true, Value: true}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1015)}}})
	p.waitQty("sp1", 5)
	if m := machineStatus(ra, "sp1"); m.Error != "" || m.State != "running" {
		t.Errorf("status: state %s, error %q", m.State, m.Error)
	}
	for metric, want := range map[string]string{
		certificatesMetric: "1", // the DBIRTH's: the NBIRTH names none of the agent's metrics
		`plantedge_sparkplug_unknown_aliases_total{source="broker"}`: "0",
	} {
		if v := p.metricLine(metric); v != want {
			t.Errorf("%s = %q, want %s", metric, v, want)
		}
	}
	ra.stop()

	// Off again, the edge node re-aliases (good 2, run 1) while the agent
	// is down; the agent starts without the option: DATA by alias waits.
	p.editConfig("    sparkplug_certificates: true\n", "")
	spBirths(p, 0, 1020, 2, 1)
	ra = p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1030)}}})
	waitFor(t, 20*time.Second, "waiting for a BIRTH", func() (bool, string) {
		m := machineStatus(ra, "sp1")
		return strings.Contains(m.Error, "waiting for a BIRTH"), m.Error
	})
	// A reload switches it on: the new map (good is alias 2) is read.
	p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_certificates: true\n")
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the certificate read", func() (bool, string) {
		v := p.metricLine(certificatesMetric)
		return v == "1", v
	})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1032)}, {Alias: 1, HasAlias: true, Value: true}}})
	p.waitQty("sp1", 22) // 1015 → 1032
	if m := machineStatus(ra, "sp1"); m.Error != "" {
		t.Errorf("status error %q after the certificate", m.Error)
	}
}
