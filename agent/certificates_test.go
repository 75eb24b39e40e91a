package agent_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/nettest"
	"github.com/plantedge/plantedge/internal/sptest"
)

const certificatesMetric = `plantedge_sparkplug_certificates_total{source="broker"}`

// certificatesPlant is sparkplugPlant on a Sparkplug-aware broker with
// sparkplug_certificates on, whose edge node was born (good alias 1, run
// alias 2) before the agent first starts: its BIRTHs are in the broker's
// certificates only.
func certificatesPlant(t *testing.T) *plant {
	p := sparkplugPlant(t)
	if err := p.broker.SparkplugAware(); err != nil {
		t.Fatal(err)
	}
	spBirths(p, 0, 1000, 1, 2)
	// The broker publishes them off the edge node's connection: an agent
	// subscribed before then gets the DATA before the DBIRTH's certificate
	// (a fresh-clone CI under load: alias 1 unread, "no BIRTH of it").
	waitFor(t, 10*time.Second, "the broker's certificates of the NBIRTH and DBIRTH", func() (bool, string) {
		n := p.broker.Certificates()
		return n >= 2, fmt.Sprint(n)
	})
	p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_certificates: true\n")
	return p
}

// With sparkplug_certificates on a Sparkplug-aware broker, the agent reads
// DATA by alias from its start, by the alias map of the BIRTH certificate
// the broker kept: nothing waits for a BIRTH, no rebirth is asked for. The
// certificate's values are not counted (they may be old): the counter
// counts from its first DATA. Switched on by a reload, it takes effect at
// once: the source subscribes to the certificates and reads the map.
func TestSparkplugCertificates(t *testing.T) {
	t.Parallel()
	p := certificatesPlant(t)
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

// sparkplug_certificates turned off while the broker keeps the agent's
// session (clean_session false): the session still holds the two
// certificate filters, so the broker's copy of every later BIRTH reaches
// the agent, is taken for another client's message ("stray", status and a
// WARN about a second agent using this client_id), and the connector's
// unsubscribe of the message's topic does not remove the filter.
//
// Fixed: the agent keeps the session's filters in its buffer file, and a
// configuration without some of them unsubscribes them at its connect.
func TestSparkplugCertificatesOffLeavesNoStraySubscriptions(t *testing.T) {
	t.Parallel()
	p := certificatesThenOff(t)
	noStraysAfterBirths(p)
}

// As above, with the broker's entry renamed in the same edit (same URL and
// client_id: the same session at the broker). The filters to unsubscribe
// were kept under the old name, which no source has (the review); they
// follow the session now.
func TestRenamedBrokerUnsubscribesFiltersOfItsOldName(t *testing.T) {
	t.Parallel()
	p := certificatesThenOff(t)
	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p.writeConfig(strings.NewReplacer("name: broker", "name: line-broker", "broker: broker", "broker: line-broker").Replace(string(raw)))
	noStraysAfterBirths(p)
}

// As above, with a run between that never reached the broker (its address
// wrong for a while): that run rewrote the stored filters as its
// configuration's alone, and the next had nothing to unsubscribe (the
// review). Filters not yet removed from the session are kept until they are.
func TestRunThatNeverConnectedPassesFiltersOn(t *testing.T) {
	t.Parallel()
	p := certificatesThenOff(t)
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", nettest.FreePort(t)) // nothing listens there
	good := p.editConfig(p.broker.URL(), dead)
	p.downSources = map[string]bool{"broker": true}
	p.startAgentWith(false).stop() // once its source is down
	p.downSources = nil
	p.writeConfig(good)
	noStraysAfterBirths(p)
}

// certificatesThenOff runs the agent on certificatesPlant until sp1 counted
// 2, stops it and turns sparkplug_certificates off.
func certificatesThenOff(t *testing.T) *plant {
	p := certificatesPlant(t)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 2)
	ra.stop()
	p.editConfig("    sparkplug_certificates: true\n", "")
	return p
}

// noStraysAfterBirths starts the agent, has the edge node born again (the
// broker passes its certificate copies on to a session still subscribed)
// and count on, and fails on any stray message.
func noStraysAfterBirths(p *plant) {
	p.t.Helper()
	ra := p.startAgentWith(false)
	spBirths(p, 4, 1020, 2, 1)
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1025)}}})
	p.waitQty("sp1", 15) // 1012 → 1020 (BIRTH) → 1025
	time.Sleep(200 * time.Millisecond)
	for _, s := range ra.a.Status().Sources {
		if s.StrayMessages != 0 {
			p.t.Errorf("source %s: %d stray messages, the last on %s", s.Name, s.StrayMessages, s.LastStrayTopic)
		}
	}
}

// As the rename above, with a new entry taking the old name (another
// broker, another session) in the same edit: the filters belong to the
// session, which the renamed entry holds, not to the name. Kept under the
// name, the new entry's first connect "removed" them from a session that
// never had them, and they came as strays on the renamed one for good
// (the stall/unsubscribe review).
func TestBrokerNameTakenByAnotherSessionLeavesNoStrays(t *testing.T) {
	t.Parallel()
	p := certificatesThenOff(t)
	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	other := fmt.Sprintf("  - name: broker\n    url: \"tcp://127.0.0.1:%d\"\n    client_id: plantedge-other\n    backoff_max: 1s\n", nettest.FreePort(t))
	p.writeConfig(strings.NewReplacer("  - name: broker\n", other+"  - name: line-broker\n", "broker: broker", "broker: line-broker").Replace(string(raw)))
	noStraysAfterBirths(p)
}

// As above, in one reload of a running agent: the filters follow the
// session from the earlier configuration's entries.
func TestBrokerNameTakenByAnotherSessionOnReload(t *testing.T) {
	t.Parallel()
	p := certificatesPlant(t)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 2)
	raw := p.editConfig("    sparkplug_certificates: true\n", "")
	raw = strings.Replace(raw, "    sparkplug_certificates: true\n", "", 1)
	other := fmt.Sprintf("  - name: broker\n    url: \"tcp://127.0.0.1:%d\"\n    client_id: plantedge-other\n    backoff_max: 1s\n", nettest.FreePort(t))
	p.writeConfig(strings.NewReplacer("  - name: broker\n", other+"  - name: line-broker\n", "broker: broker", "broker: line-broker").Replace(raw))
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "line-broker connected", func() (bool, string) {
		for _, s := range ra.a.Status().Sources {
			if s.Name == "line-broker" && s.State == "connected" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", ra.a.Status().Sources)
	})
	countedWithoutStrays(t, p, ra)
}

// As the rename above, with the URL written another way to the same broker
// (localhost for 127.0.0.1): the broker keys the session by client_id, so
// it is the same session, and its filters follow it.
func TestRenamedBrokerWithURLWrittenOtherwiseUnsubscribes(t *testing.T) {
	t.Parallel()
	p := certificatesThenOff(t)
	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	url := p.broker.URL()
	if !strings.Contains(url, "127.0.0.1") {
		t.Skipf("broker URL %s", url)
	}
	p.writeConfig(strings.NewReplacer("name: broker", "name: line-broker", "broker: broker", "broker: line-broker",
		url, strings.Replace(url, "127.0.0.1", "localhost", 1)).Replace(string(raw)))
	// Counted from the BIRTH on (the counter's address changed with the
	// URL); what matters here is the strays.
	ra := p.startAgentWith(false)
	countedWithoutStrays(t, p, ra)
}

// countedWithoutStrays has the edge node send its BIRTHs and a DATA, waits
// for the DATA's pieces in Odoo, and checks that no source got a stray
// message (a filter of an earlier configuration left subscribed).
func countedWithoutStrays(t *testing.T, p *plant, ra *runningAgent) {
	t.Helper()
	spBirths(p, 4, 1020, 2, 1)
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1025)}}})
	waitFor(t, 20*time.Second, "the DATA after the BIRTH counted", func() (bool, string) {
		return p.qty("sp1") > 2, fmt.Sprint(p.qty("sp1"))
	})
	time.Sleep(200 * time.Millisecond)
	for _, s := range ra.a.Status().Sources {
		if s.StrayMessages != 0 {
			t.Errorf("source %s: %d stray messages, the last on %s", s.Name, s.StrayMessages, s.LastStrayTopic)
		}
	}
}
