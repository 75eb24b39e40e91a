package agent_test

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// sparkplug_certificates turned off while the broker keeps the agent's
// session (clean_session false): the session still holds the two
// certificate filters, so the broker's copy of every later BIRTH reaches
// the agent, is taken for another client's message ("stray", status and a
// WARN about a second agent using this client_id), and the connector's
// unsubscribe of the message's topic does not remove the filter.
//
// Fixed: the agent keeps the session's filters in its buffer file, and a
// configuration without some of them unsubscribes them at its connect.
func TestReviewCertificatesOffLeavesStraySubscriptions(t *testing.T) {
	t.Parallel()
	p := sparkplugPlant(t)
	if err := p.broker.SparkplugAware(); err != nil {
		t.Fatal(err)
	}
	spBirths(p, 0, 1000, 1, 2)
	p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_certificates: true\n")
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 2)
	ra.stop()

	p.editConfig("    sparkplug_certificates: true\n", "")
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
