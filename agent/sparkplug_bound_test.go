package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// An edge node's devices no signal reads have their BIRTHs kept for the
// first 1,000 (spUnreadDevicesKept). A reload that then reads a device
// whose BIRTH came past them: with sparkplug_rebirth on, its first DATA by
// alias makes the agent ask for a rebirth (NCMD Node Control/Rebirth), and
// the answer's BIRTH makes it count; with it off, status says what it waits
// for and the log says why (not that no BIRTH came).
func TestSparkplugDeviceReadAfterAReloadPastTheBirthsKept(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("rebirth=%v", on), func(t *testing.T) {
			p := sparkplugRebirthPlant(t, on)
			edge := newEdgeSim(p)
			late := addSparkplugMachine(p, "spx", "spBv1.0/plant/DDATA/edge1/serial-1499")
			ra := p.startAgentWith(false)
			spBirths(p, 0, 1000, 1, 2)
			seq := 2
			next := func() int { s := seq % 256; seq++; return s }
			for i := range 1500 {
				p.spDevPublish("DBIRTH", fmt.Sprintf("serial-%d", i), sptest.Payload{Seq: next(), Metrics: []sptest.Metric{
					{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(500)}}})
			}
			// In order after the BIRTHs: all of them are in once sp1 counts.
			p.spPublish("DDATA", sptest.Payload{Seq: next(), Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
			p.waitQty("sp1", 10)
			if !strings.Contains(p.logs.String(), "more than 1000 devices no signal reads") {
				t.Fatalf("no note of the devices past the bound:\n%s", p.logs.String())
			}
			p.editConfig("  - id: sp1\n", late+"  - id: sp1\n")
			p.reload(ra)
			p.spDevPublish("DDATA", "serial-1499", sptest.Payload{Seq: next(), Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(520)}}})
			waitFor(t, 20*time.Second, "spx waiting for a BIRTH", func() (bool, string) {
				e := machineStatus(ra, "spx").Error
				return strings.Contains(e, "waiting for a BIRTH of spBv1.0/plant/DBIRTH/edge1/serial-1499"), e
			})
			if on {
				edge.waitRequest()
			} else {
				logs := p.logs.String()
				i := strings.Index(logs, "metric alias 1 cannot be read")
				if i < 0 {
					t.Fatalf("no log of the alias not read:\n%s", logs)
				}
				line := logs[i:]
				line = line[:strings.IndexByte(line, '\n')]
				if strings.Contains(line, "no BIRTH of it was received since plantedge connected") && !strings.Contains(line, "not kept") {
					t.Errorf("the log says no BIRTH came, while one came and was not kept (the edge node's devices past the bound):\n%s", line)
				}
				if n := edge.requests(); n != 0 {
					t.Errorf("%d rebirth requests with sparkplug_rebirth off", n)
				}
			}
			// The edge node's rebirth (or its own next BIRTH) cures it.
			p.spPublish("NBIRTH", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(1)}}})
			seq = 1
			p.spDevPublish("DBIRTH", "serial-1499", sptest.Payload{Seq: next(), Metrics: []sptest.Metric{
				{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(530)}}})
			p.spDevPublish("DDATA", "serial-1499", sptest.Payload{Seq: next(), Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(540)}}})
			p.waitQty("spx", 10)
		})
	}
}
