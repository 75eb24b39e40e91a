package mapping

import (
	"testing"
	"time"
)

// TestStoredStateIsPinned: a machine's mapping state (last raw counter
// values, run state, open stop) is kept in the buffer file across upgrades
// and rollbacks, so its JSON is pinned: a renamed field would make the next
// version forget a counter's baseline (and count a whole counter value
// again, or none) or an open stop. Add fields; never rename or reuse one.
func TestStoredStateIsPinned(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	running := false
	st := NewState()
	st.Machines["press-07"] = &MachineState{
		Counters: map[Signal]*CounterState{
			GoodCount: {
				Src: "opcua:line1:ns=2;s=Press07.GoodCount:", Server: "opc.tcp://10.0.0.5:4840", Last: 65530, Time: t0, Seen: t0,
				ResetFrom: 12, ResetTime: t0.Add(time.Second), ResetFromTime: t0.Add(-time.Second), ResetWrap: true,
				BehindTime: t0.Add(-time.Hour), BehindCount: 3,
			},
		},
		Running:        &running,
		RunningTime:    t0,
		StopStart:      t0.Add(time.Minute),
		LineOpened:     true,
		LineSite:       "plant-2",
		StopWorkcenter: "WC-PRESS-07",
		Reason:         "JAM",
		ReasonSet:      true,
		ReasonTime:     t0.Add(2 * time.Minute),
	}
	const want = `{"counters":{"good_count":{"src":"opcua:line1:ns=2;s=Press07.GoodCount:","server":"opc.tcp://10.0.0.5:4840","last":65530,` +
		`"time":"2026-11-30T06:00:00Z","reset_from":12,"reset_time":"2026-11-30T06:00:01Z",` +
		`"reset_from_time":"2026-11-30T05:59:59Z","reset_wrap":true,"seen":"2026-11-30T06:00:00Z",` +
		`"behind_time":"2026-11-30T05:00:00Z","behind_count":3}},` +
		`"running":false,"running_time":"2026-11-30T06:00:00Z","stop_start":"2026-11-30T06:01:00Z",` +
		`"line_opened":true,"line_site":"plant-2","stop_workcenter":"WC-PRESS-07","reason":"JAM","reason_set":true,"reason_time":"2026-11-30T06:02:00Z"}`
	b, err := st.Marshal("press-07")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("machine state stored as\n%s\nwant\n%s", b, want)
	}
	back := NewState()
	if err := back.Unmarshal("press-07", []byte(want)); err != nil {
		t.Fatal(err)
	}
	again, err := back.Marshal("press-07")
	if err != nil || string(again) != want {
		t.Fatalf("read back and stored again as\n%s (%v)\nwant\n%s", again, err, want)
	}
	// A machine nothing is known about yet is stored as an empty object.
	if b, err := NewState().Marshal("new"); err != nil || string(b) != `{}` {
		t.Fatalf("empty state stored as %s, %v", b, err)
	}
}
