package agent_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// Review (review-unsub), finding 3: sparkplug_certificates turned off
// together with a rename of the broker entry (same URL, same client_id, so
// the same session on the broker). The filters to unsubscribe are keyed by
// the broker's name: the last run's list kept under the old name goes to
// a.unsubscribe["broker"], which no source reads, and is then deleted from
// the buffer file. The certificate filters stay in the session and their
// messages come as strays for good — the bug be659ba fixed, back.
func TestReviewUnsubRenamedBrokerKeepsStraySubscriptions(t *testing.T) {
	t.Parallel()
	p := certificatesPlant(t)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 2)
	ra.stop()

	p.editConfig("    sparkplug_certificates: true\n", "")
	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.ReplaceAll(strings.Replace(string(raw), "name: broker\n", "name: line-broker\n", 1), "broker: broker,", "broker: line-broker,")
	if renamed == string(raw) || strings.Contains(renamed, "broker: broker,") {
		t.Fatalf("rename not applied:\n%s", raw)
	}
	p.writeConfig(renamed)
	ra = p.startAgentWith(false)
	spBirths(p, 4, 1020, 2, 1) // the broker passes its certificate copies on
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1025)}}})
	p.waitQty("sp1", 15) // 1012 → 1020 (BIRTH) → 1025
	time.Sleep(200 * time.Millisecond)
	for _, s := range ra.a.Status().Sources {
		if s.StrayMessages != 0 {
			t.Errorf("source %s: %d stray messages, the last on %s", s.Name, s.StrayMessages, s.LastStrayTopic)
		}
	}
}

// Review (review-unsub), finding 4: the last run's filter list in the
// buffer file is replaced by the configuration in force at the start,
// before the source has connected and unsubscribed anything. A run that
// never reaches the broker (it is down, or unreachable from the box) and
// is restarted forgets the filters to unsubscribe: the next run that
// reaches the broker gets the certificate filters' messages as strays for
// good. (Here the unreachable broker is the same entry pointed for one run
// at a port nothing listens on.)
func TestReviewUnsubRunThatNeverConnectedForgetsFilters(t *testing.T) {
	t.Parallel()
	p := certificatesPlant(t)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 2)
	ra.stop()

	p.editConfig("    sparkplug_certificates: true\n", "")
	good := p.editConfig(p.broker.URL(), "tcp://127.0.0.1:52001") // nothing listens there
	p.downSources = map[string]bool{"broker": true}
	ra = p.startAgentWith(false)
	ra.stop()
	p.downSources = nil
	p.writeConfig(good)

	ra = p.startAgentWith(false)
	spBirths(p, 4, 1020, 2, 1)
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1025)}}})
	p.waitQty("sp1", 15)
	time.Sleep(200 * time.Millisecond)
	for _, s := range ra.a.Status().Sources {
		if s.StrayMessages != 0 {
			t.Errorf("source %s: %d stray messages, the last on %s", s.Name, s.StrayMessages, s.LastStrayTopic)
		}
	}
}

// Review (review-unsub), finding 1 at the agent: a machine taken out of the
// configuration by a reload (its topic unsubscribed by the replaced source)
// and put back at the next start, while the other machine of the broker
// kept publishing during the restart. mochi resends those messages in the
// resumed session, answers both SUBSCRIBEs 0x91, and the connector takes
// the second for "the session holds it": press-2's counts never arrive,
// status shows the source connected, nothing refused.
func TestReviewUnsubMachinePutBackAfterRestartGoesDead(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2"}})
	ra := p.startAgentWith(true)
	m1, m2 := p.machines[0], p.machines[1]
	p.produce(m1, 2, 0)
	p.produce(m2, 2, 0)
	p.waitExactQty(ra, "press-1", 2)
	p.waitExactQty(ra, "press-2", 2)

	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	full := string(raw)
	i := strings.Index(full, "  - id: press-2\n")
	j := strings.Index(full[i+1:], "  - id: ")
	without := full[:i]
	if j >= 0 {
		without += full[i+1+j:]
	}
	p.writeConfig(without)
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the source replaced and connected", func() (bool, string) {
		return strings.Contains(p.logs.String(), "unsubscribed the broker's session from filters"), "no unsubscribe logged"
	})
	ra.stop()

	for range 10 { // press-1 runs on while the agent restarts
		p.produce(m1, 1, 0)
	}
	p.writeConfig(full)
	ra = p.startAgentWith(false)
	p.produce(m2, 3, 0)
	p.waitExactQty(ra, "press-1", 12)
	waitFor(t, 10*time.Second, "press-2's counts", func() (bool, string) {
		got := p.qty("press-2")
		return got == 5, fmt.Sprintf("qty %v; sources %+v; machine %+v", got, ra.a.Status().Sources, machineStatus(ra, "press-2"))
	})
}
