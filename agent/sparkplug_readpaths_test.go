package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// addSparkplugMachine gives Odoo a work center and a work order in progress
// for machine id, and returns the config lines of a machine whose good
// count is metric Counters/Good of Sparkplug B topic data (not yet in the
// plant's config: a reload adds it).
func addSparkplugMachine(p *plant, id, data string) string {
	wc := p.odoo.AddWorkcenter(wcCode(id), id)
	p.wcIDs[id] = wc
	mo := p.odoo.AddProduction("WH/MO/"+id, p.product, 100000)
	p.woIDs[id] = p.odoo.AddWorkorder(mo, wc, "WO "+id, "progress")
	field := "Counters/Good"
	if strings.Contains(data, "/NDATA/") {
		field = "Node/Good"
	}
	return fmt.Sprintf("  - id: %s\n    workcenter: %s\n    good_count: { mqtt: { broker: broker, format: sparkplug_b, topic: %s, field: %s } }\n", id, wcCode(id), data, field)
}

// spDevPublish publishes a message of device dev of edge node edge1.
func (p *plant) spDevPublish(typ, dev string, pl sptest.Payload) {
	p.t.Helper()
	if pl.Timestamp == 0 {
		pl.Timestamp = uint64(time.Now().UnixMilli())
	}
	if err := p.broker.Publish("spBv1.0/plant/"+typ+"/edge1/"+dev, pl.Encode(), false, 1); err != nil {
		p.t.Fatal(err)
	}
}

func (p *plant) reload(ra *runningAgent) {
	p.t.Helper()
	if err := ra.a.Reload(p.t.Context(), p.cfgPath); err != nil {
		p.t.Fatal(err)
	}
}

// badPayload is no Sparkplug B payload (a truncated field).
var badPayload = []byte{0xff, 0xff}

// The per-address state kept only where Mapper.Feeds says a topic feeds a
// signal must still be kept on every path that does: a device's DBIRTH
// (by name) and DATA (by alias), an edge node's own NDATA read by a
// machine, and a device read only after a reload. Each shows its unusable
// value on its machine's status; a reload that stops reading a device
// forgets it (re-added, the machine shows no old note).
func TestSparkplugStatusNotesOnEveryReadPath(t *testing.T) {
	p := sparkplugPlant(t)
	nodeMachine := addSparkplugMachine(p, "spn", "spBv1.0/plant/NDATA/edge1")
	p.editConfig("  - id: sp1\n", nodeMachine+"  - id: sp1\n")
	dev7 := addSparkplugMachine(p, "sp7", "spBv1.0/plant/DDATA/edge1/dev7")
	ra := p.startAgentWith(false)
	errOf := func(id string) string { return machineStatus(ra, id).Error }
	waitErr := func(id, want string) {
		t.Helper()
		waitFor(t, 20*time.Second, id+" error "+want, func() (bool, string) {
			e := errOf(id)
			return strings.Contains(e, want), e
		})
	}
	p.spPublish("NBIRTH", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{
		{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(0)},
		{Name: "Node/Good", Alias: 10, HasAlias: true, Datatype: sptest.UInt32, Value: int64(100)}}})
	p.spPublish("DBIRTH", sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1000)},
		{Name: "State/Running", Alias: 2, HasAlias: true, Datatype: sptest.Boolean, Value: true}}})
	p.spDevPublish("DBIRTH", "dev7", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(70)}}})
	// Node level: NDATA by alias counts, a malformed NDATA shows.
	p.spPublish("NDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 10, HasAlias: true, Value: int64(105)}}})
	p.waitQty("spn", 5)
	if err := p.broker.Publish("spBv1.0/plant/NDATA/edge1", badPayload, false, 1); err != nil {
		t.Fatal(err)
	}
	waitErr("spn", "sent a value that cannot be used")
	// Device: DATA by alias counts; a malformed DATA and a malformed
	// DBIRTH show.
	p.spPublish("DDATA", sptest.Payload{Seq: 4, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.waitQty("sp1", 10)
	if err := p.broker.Publish("spBv1.0/plant/DDATA/edge1/sp1", badPayload, false, 1); err != nil {
		t.Fatal(err)
	}
	waitErr("sp1", `sent a value that cannot be used: value from broker "spBv1.0/plant/DDATA/edge1/sp1"`)
	p.spPublish("DDATA", sptest.Payload{Seq: 5, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1011)}}})
	waitFor(t, 20*time.Second, "sp1's note gone with a good DATA", func() (bool, string) {
		e := errOf("sp1")
		return !strings.Contains(e, "cannot be used"), e
	})
	if err := p.broker.Publish("spBv1.0/plant/DBIRTH/edge1/sp1", badPayload, false, 1); err != nil {
		t.Fatal(err)
	}
	waitErr("sp1", `sent a value that cannot be used: value from broker "spBv1.0/plant/DBIRTH/edge1/sp1"`)

	// dev7 is read by no machine yet: its malformed DATA is nobody's (a
	// good DATA of sp1 after it: it was taken before the reload).
	if err := p.broker.Publish("spBv1.0/plant/DDATA/edge1/dev7", badPayload, false, 1); err != nil {
		t.Fatal(err)
	}
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1012)}}})
	p.waitQty("sp1", 12)
	if e := machineStatus(ra, "sp1").Error; strings.Contains(e, "dev7") {
		t.Errorf("dev7, read by no machine, shows on sp1: %s", e)
	}
	// A reload adds sp7, reading dev7: its DATA by alias is read by the
	// BIRTH kept from before; a malformed one shows on sp7.
	full := p.editConfig("  - id: sp1\n", dev7+"  - id: sp1\n")
	p.reload(ra)
	// (The first value read is sp7's baseline; the next counts.)
	p.spDevPublish("DDATA", "dev7", sptest.Payload{Seq: 7, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(77)}}})
	p.spDevPublish("DDATA", "dev7", sptest.Payload{Seq: 8, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(84)}}})
	p.waitQty("sp7", 7)
	if err := p.broker.Publish("spBv1.0/plant/DDATA/edge1/dev7", badPayload, false, 1); err != nil {
		t.Fatal(err)
	}
	waitErr("sp7", `sent a value that cannot be used: value from broker "spBv1.0/plant/DDATA/edge1/dev7"`)
	// A reload that removes sp7 forgets dev7's note: the machine added
	// back shows none until its topic sends another.
	p.writeConfig(full)
	p.reload(ra)
	if st := machineStatus(ra, "sp7"); st.ID != "" {
		t.Fatalf("sp7 still in status after the reload that removed it: %+v", st)
	}
	p.editConfig("  - id: sp1\n", dev7+"  - id: sp1\n")
	p.reload(ra)
	if e := errOf("sp7"); strings.Contains(e, "cannot be used") {
		t.Errorf("sp7 re-added shows the note of before its removal: %s", e)
	}
}
