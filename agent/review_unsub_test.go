package agent_test

import (
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
