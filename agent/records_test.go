package agent

import (
	"testing"

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
	e := eventRecord{Start: 1, End: 2, Reason: "JAM", Loss: "Equipment Failure", Defaulted: true}
	const wantEvent = `{"s":1,"e":2,"r":"JAM","loss":"Equipment Failure","def":true}`
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
