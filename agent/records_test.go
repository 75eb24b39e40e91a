package agent

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// TestStoredRecordsArePinned: count and event records stay in the buffer
// across upgrades (and a rollback), so their JSON is pinned: renaming a
// field would make the next version read an old backlog as zero pieces or
// no stop. Add fields; never rename or reuse one.
func TestStoredRecordsArePinned(t *testing.T) {
	c := countRecord{Delta: 3, First: 1700000000000, Last: 1700000001000}
	const wantCount = `{"d":3,"f":1700000000000,"l":1700000001000}`
	if got := string(mustJSON(c)); got != wantCount {
		t.Fatalf("count record stored as %s, want %s", got, wantCount)
	}
	// A fractional count carries the mark of an exact decimal sum (x).
	if got, want := string(mustJSON(countRecord{Delta: 0.125, First: 1, Last: 2})), `{"d":0.125,"f":1,"l":2,"x":true}`; got != want {
		t.Fatalf("fractional count record stored as %s, want %s", got, want)
	}
	e := eventRecord{Start: 1, End: 2, Reason: "JAM", Loss: "Equipment Failure", Defaulted: true, Site: "plant-2", Workcenter: "WC-PRESS-07"}
	const wantEvent = `{"s":1,"e":2,"r":"JAM","loss":"Equipment Failure","def":true,"site":"plant-2","wc":"WC-PRESS-07"}`
	if got := string(mustJSON(e)); got != wantEvent {
		t.Fatalf("event record stored as %s, want %s", got, wantEvent)
	}
	if got, err := decodeCount(buffer.Record{Data: []byte(wantCount)}); err != nil || got != c {
		t.Fatalf("count record read back as %+v, %v", got, err)
	}
	if got, err := decodeEvent(buffer.Record{Data: []byte(wantEvent)}); err != nil || got != e {
		t.Fatalf("event record read back as %+v, %v", got, err)
	}
}

// TestStoredMetaIsPinned: the per-machine state the forwarder and the ingest
// keep next to the records (work order and what was written to it, a scrap
// booking in flight, the last closed stop, running totals) is read back by
// the next version after an upgrade, so its keys and JSON are pinned too: a
// renamed field would make it forget an in-flight write or scrap booking and
// send it twice.
func TestStoredMetaIsPinned(t *testing.T) {
	cases := []struct {
		key, wantKey string
		value        any
		want         string
	}{
		{woMetaKey("press-07"), "wo/press-07",
			woState{ID: 41, Name: "WO/00041", MO: 7, Baseline: 10, Counted: 25, Written: 20, InFlight: &inflightWrite{Target: 35, MaxSeq: 912}},
			`{"id":41,"name":"WO/00041","mo":7,"baseline":10,"counted":25,"written":20,"inflight":{"target":35,"max_seq":912},"sum":659158289}`},
		{woMetaKey("press-07"), "wo/press-07",
			woState{ID: 41, Name: "WO/00041", Baseline: 10, Counted: 25, Written: 25},
			`{"id":41,"name":"WO/00041","baseline":10,"counted":25,"written":25,"sum":1316283309}`},
		{woMetaKey("press-07"), "wo/press-07",
			woState{ID: 41, Name: "WO/00041", Baseline: 10, Counted: 25, Written: 35, Field: "qty_produced"},
			`{"id":41,"name":"WO/00041","baseline":10,"counted":25,"written":35,"field":"qty_produced","sum":1826931546}`},
		{scrapMetaKey("press-07"), "scrap/press-07",
			scrapOutbox{XMLID: "plantedge.plant-2_press-07_scrap_912", Qty: 3, MaxSeq: 912, WorkorderID: 41, ProductionID: 7, ProductID: 5, UomID: 1},
			`{"xmlid":"plantedge.plant-2_press-07_scrap_912","qty":3,"max_seq":912,"wo":41,"mo":7,"product":5,"uom":1,"sum":1284804066}`},
		{scrapMetaKey("press-07"), "scrap/press-07",
			scrapOutbox{XMLID: "plantedge.plant-2_press-07_scrap_913", Qty: 0.13, MaxSeq: 913, WorkorderID: 41, ProductionID: 7, ProductID: 5, UomID: 1, Carry: -0.005},
			`{"xmlid":"plantedge.plant-2_press-07_scrap_913","qty":0.13,"max_seq":913,"wo":41,"mo":7,"product":5,"uom":1,"carry":-0.005,"sum":3683790885}`},
		{machineMetaKey("press-07"), "machine/press-07",
			machineMeta{Mapping: []byte(`{"running":true}`), Good: 1200, Scrap: 4},
			`{"mapping":"eyJydW5uaW5nIjp0cnVlfQ==","good":1200,"scrap":4}`},
	}
	for _, c := range cases {
		if c.key != c.wantKey {
			t.Errorf("meta key %q, want %q", c.key, c.wantKey)
		}
		if got := string(mustJSON(c.value)); got != c.want {
			t.Errorf("%s stored as\n%s\nwant\n%s", c.key, got, c.want)
		}
	}
	if k := closedMetaKey("press-07"); k != "closed/press-07" {
		t.Errorf("closed-stop key %q", k)
	}
	if decimalsMetaKey != "decimals" {
		t.Errorf("exact-decimals mark %q", decimalsMetaKey)
	}
	if k := scrapCarryKey("press-07"); k != "scrapcarry/press-07" {
		t.Errorf("scrap carry key %q", k)
	}
	if k := unattributedMetaKey("press-07"); k != "unattributed/press-07" {
		t.Errorf("unattributed key %q", k)
	}
	d := scrapDraft{XMLID: "plantedge.plant-2_press-07_scrap_ab12cd34_912", Qty: 3, Workorder: "WO/00041"}
	if k, v := scrapDraftKey("press-07", d.XMLID), string(mustJSON(d)); k != "scrapdraft/press-07/plantedge.plant-2_press-07_scrap_ab12cd34_912" ||
		v != `{"xmlid":"plantedge.plant-2_press-07_scrap_ab12cd34_912","qty":3,"wo":"WO/00041"}` {
		t.Errorf("scrap draft stored as %s = %s", k, v)
	}
	// Read back into the types the agent decodes them with.
	wo, err := decodeWOState([]byte(cases[0].want))
	if err != nil || wo.Sum == 0 {
		t.Errorf("work-order state read back as %+v, %v: its checksum does not hold", wo, err)
	}
	if wo.Sum = 0; !reflect.DeepEqual(wo, cases[0].value) {
		t.Errorf("work-order state read back as %+v", wo)
	}
	// One digit off (counted 25 read 65): the checksum tells.
	if wo, err := decodeWOState([]byte(strings.Replace(cases[0].want, `"counted":25`, `"counted":65`, 1))); err == nil {
		t.Errorf("a work-order state one digit off passes its checksum: %+v", wo)
	}
	so, err := decodeScrapOutbox([]byte(cases[3].want))
	if err != nil || so.Sum == 0 {
		t.Errorf("scrap booking read back as %+v, %v: its checksum does not hold", so, err)
	}
	if so.Sum = 0; so != cases[3].value.(scrapOutbox) {
		t.Errorf("scrap booking read back as %+v", so)
	}
	// One digit off (qty 3 read 7: one bit), or another work order: the
	// checksum tells. One of an older version, without one, reads.
	for _, off := range []string{strings.Replace(cases[3].want, `"qty":3`, `"qty":7`, 1), strings.Replace(cases[3].want, `"wo":41`, `"wo":43`, 1)} {
		if so, err := decodeScrapOutbox([]byte(off)); err == nil {
			t.Errorf("a scrap booking one digit off passes its checksum: %+v", so)
		}
	}
	old := `{"xmlid":"plantedge.plant-2_press-07_scrap_912","qty":3,"max_seq":912,"wo":41,"mo":7,"product":5,"uom":1}`
	if so, err := decodeScrapOutbox([]byte(old)); err != nil || so != cases[3].value.(scrapOutbox) {
		t.Errorf("a scrap booking of an older version read back as %+v, %v", so, err)
	}
	var mm machineMeta
	if err := json.Unmarshal([]byte(cases[5].want), &mm); err != nil || string(mm.Mapping) != `{"running":true}` || mm.Good != 1200 || mm.Scrap != 4 {
		t.Errorf("machine totals read back as %+v, %v", mm, err)
	}
}

// A dead letter says in words what it holds.
func TestDescribeRecord(t *testing.T) {
	tenth := 0.1
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	zone := start.Format("MST")
	for _, c := range []struct {
		rec  buffer.Record
		want string
	}{
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/good", Data: mustJSON(countRecord{Delta: 3})}, "3 good pieces"},
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/scrap", Data: mustJSON(countRecord{Delta: 0.5})}, "0.5 scrapped pieces"},
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/scrap", Data: mustJSON(countRecord{Delta: 1})}, "1 scrapped piece"},
		// A counter with factor 0.1 that stepped by 3 (mapping46): not
		// "0.30000000000000004 good pieces".
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/good", Data: mustJSON(countRecord{Delta: 3 * tenth})}, "0.3 good pieces"},
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/good", Data: mustJSON(countRecord{Delta: 2.5e6})}, "2500000 good pieces"},
		{buffer.Record{Lane: buffer.LaneEvents, Key: "press-1", Data: mustJSON(eventRecord{Start: start.UnixMilli(), End: start.Add(90 * time.Second).UnixMilli(), Reason: "JAM"})},
			"stop from 2026-03-04 05:06:07 " + zone + " to 2026-03-04 05:07:37 " + zone + ", reason JAM"},
		{buffer.Record{Lane: buffer.LaneEvents, Key: "press-1", Data: mustJSON(eventRecord{Start: start.UnixMilli()})}, "stop from 2026-03-04 05:06:07 " + zone + ", still open"},
		{buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/good", Data: []byte("{")}, ""},
	} {
		if got := describeRecord(c.rec); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.rec.Key, c.rec.Data, got, c.want)
		}
	}
}

// Sums of fractional counts show without float noise.
func TestTidy(t *testing.T) {
	var sum float64
	for range 195 {
		sum += 0.1
	}
	if sum == 19.5 || tidy(sum) != 19.5 {
		t.Errorf("sum %v, tidy %v", sum, tidy(sum))
	}
}
