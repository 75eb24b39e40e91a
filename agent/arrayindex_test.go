package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Two machines whose good counters are two elements of one OPC UA array
// node (a PLC's counters, one per lane), each read by its index, are each
// booked their own pieces; an index beyond the array is the machine's
// error in status, and nothing is booked from it.
func TestEndToEndArrayElementsByIndex(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-lane-1", "ua-lane-2"}, uaArray: true})
	ra := p.startAgent()
	lane1, lane2 := p.machines[0], p.machines[1]
	for range 4 {
		p.produce(lane1, 3, 0)
		p.produce(lane2, 5, 0)
		time.Sleep(120 * time.Millisecond)
	}
	p.waitExact(ra, 20*time.Second)
	if p.qty("ua-lane-1") != 12 || p.qty("ua-lane-2") != 20 {
		t.Fatalf("lane 1 booked %v, lane 2 %v; want 12 and 20", p.qty("ua-lane-1"), p.qty("ua-lane-2"))
	}

	// lane 2 now reads an element the array does not have.
	p.editConfig("index: 1 }", "index: 7 }")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	counts := p.ua.NodeID("Counts")
	waitFor(t, 20*time.Second, "lane 2's index error in status", func() (bool, string) {
		for _, m := range ra.a.Status().Machines {
			if m.ID == "ua-lane-2" {
				return strings.Contains(m.Error, counts+"[7] is BadIndexRangeNoData") && strings.Contains(m.Error, "index"), m.Error
			}
		}
		return false, "no ua-lane-2"
	})
	p.produce(lane2, 4, 0)
	p.produce(lane1, 2, 0)
	p.waitExactQty(ra, "ua-lane-1", 14)
	// lane 2's pieces came in the same array as lane 1's, booked by now.
	if got := p.qty("ua-lane-2"); got != 20 {
		t.Errorf("lane 2 booked %v from an element the array does not have, want 20 still", got)
	}
	if !strings.Contains(p.logs.String(), fmt.Sprintf("address=%q", counts+"[7]")) {
		t.Errorf("no log line names %s[7]", counts)
	}
	for _, src := range ra.a.Status().Sources {
		if src.Name == "line1" && (src.MalformedSamples == 0 || src.LastMalformed != counts+"[7]: BadIndexRangeNoData") {
			t.Errorf("line1 counted %d unusable values, the last %q; want lane 2's element counted", src.MalformedSamples, src.LastMalformed)
		}
	}
}
