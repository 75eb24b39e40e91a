package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
)

const testConfig = `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
opcua:
  - { name: plc, endpoint: "opc.tcp://127.0.0.1:4840" }
mqtt:
  - { name: b, url: "tcp://127.0.0.1:1883", client_id: pe }
machines:
  - id: m1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=2;s=Good" } }
    running: { mqtt: { broker: b, topic: line/state, field: run } }
    downtime_reason: { mqtt: { broker: b, topic: line/state, field: reason }, map: { J: Jam } }
  - id: m2
    workcenter: WC2
    good_count: { opcua: { server: plc, node: "ns=2;s=Good" } }
    scrap_count: { mqtt: { broker: b, topic: line/state, field: m2.scrap } }
`

func newTestMapper(t testing.TB, y string) *Mapper {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSubscriptionsDeduplicated(t *testing.T) {
	m := newTestMapper(t, testConfig)
	if got := m.OPCUANodes("plc"); len(got) != 1 || got[0].Address() != "ns=2;s=Good" {
		t.Errorf("OPCUANodes = %v", got)
	}
	if got := m.MQTTTopics("b"); !slices.Equal(got, []string{"line/state"}) {
		t.Errorf("MQTTTopics = %v", got)
	}
	if got := m.OPCUANodes("nope"); len(got) != 0 {
		t.Errorf("unknown server: %v", got)
	}
	if got := m.Machines(); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("Machines = %v", got)
	}
}

// TestOneNodeTwoMachines: a sample feeds every machine that uses it, and
// changed names each machine once.
func TestOneNodeTwoMachines(t *testing.T) {
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	s := connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: uint16(7), Good: true, SourceTime: at}
	if _, changed, err := m.Apply(st, s); err != nil || !slices.Equal(changed, []string{"m1", "m2"}) {
		t.Fatalf("changed = %v, %v", changed, err)
	}
	s.Value, s.SourceTime = int32(9), at.Add(time.Second)
	evs, _, err := m.Apply(st, s)
	if err != nil || len(evs) != 2 || evs[0].Machine != "m1" || evs[1].Machine != "m2" || evs[0].Delta != 2 {
		t.Fatalf("events = %+v, %v", evs, err)
	}
}

// A 32-bit integer's largest value is a gateway's "no value" marker unless
// the counter wraps there: not counted (the OPC UA probe: one UInt32
// 4294967295 among Int32 readings booked 4.29 billion pieces), and the next
// reading counts from the last good one.
func TestIntMaxMarkerIsNotCounted(t *testing.T) {
	for _, tc := range []struct {
		v        any
		rollover uint64
		bad      bool
	}{
		{uint32(math.MaxUint32), 0, true},
		{int32(math.MaxInt32), 0, true},
		{float64(math.MaxUint32), 0, true},       // MQTT: a JSON number
		{int64(math.MaxUint32), 1 << 40, false},  // a wider counter on its way
		{uint32(math.MaxUint32), 1 << 32, false}, // its last value before the wrap
		{int32(math.MaxInt32), 1 << 32, false},
		{int32(math.MaxInt32), 1 << 31, false},
		{uint32(math.MaxUint32 - 1), 0, false},
		{uint16(math.MaxUint16), 0, false}, // 16-bit counters reach theirs at every wrap
		// 2^53 and past it (2^53+1 reads as 2^53 in a float64: the values
		// probe booked 9.007×10^15 pieces for it), and JavaScript's largest
		// safe integer, 2^53−1, a JS gateway's "no value"
		{int64(1 << 53), 0, true},
		{int64(1<<53 + 1), 0, true},
		{uint64(1<<53 + 1), 0, true},
		{json.Number("9007199254740993"), 0, true},
		{"9007199254740993", 0, true},
		{int64(1<<53 - 1), 0, true},
		{float64(1<<53 - 1), 0, true},
		{int64(1<<53 - 2), 0, false},
	} {
		err := CheckValue(GoodCount, tc.v, tc.rollover)
		if bad := errors.Is(err, ErrBadValue); bad != tc.bad {
			t.Errorf("%T %v, rollover %d: %v; want bad %v", tc.v, tc.v, tc.rollover, err, tc.bad)
		}
	}
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	s := connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: int32(600), Good: true, SourceTime: at}
	mustApply(t, m, st, s)
	s.Value, s.SourceTime = uint32(math.MaxUint32), at.Add(time.Second)
	if evs, _, err := m.Apply(st, s); !errors.Is(err, ErrBadValue) || len(evs) != 0 {
		t.Fatalf("the marker: %+v, %v", evs, err)
	}
	s.Value, s.SourceTime = int32(610), at.Add(2*time.Second)
	evs, _, err := m.Apply(st, s)
	if err != nil || len(evs) != 2 || evs[0].Delta != 10 || evs[0].Reset {
		t.Fatalf("after the marker: %+v, %v; want 10 pieces each, no reset", evs, err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	mustApply(t, m, st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: []byte(`{"run":false,"reason":"J","m2":{"scrap":4}}`), Good: true, ReceiveTime: at})
	mustApply(t, m, st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: 3.0, Good: true, SourceTime: at})
	for _, id := range []string{"m1", "m2"} {
		b, err := st.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 512 {
			t.Errorf("state of %s is %d bytes: %s", id, len(b), b)
		}
		fresh := NewState()
		if err := fresh.Unmarshal(id, b); err != nil {
			t.Fatal(err)
		}
		b2, _ := fresh.Marshal(id)
		if string(b) != string(b2) {
			t.Errorf("round trip of %s: %s != %s", id, b, b2)
		}
	}
	if err := NewState().Unmarshal("m1", []byte("{")); err == nil {
		t.Error("Unmarshal accepted garbage")
	}
	if b, err := NewState().Marshal("unknown"); err != nil || string(b) != "{}" {
		t.Errorf("Marshal unknown = %s, %v", b, err)
	}
}

// TestCounterSourceChanged: a stored baseline from another tag (the mapping
// was edited between runs) is not compared with the new tag's value, and
// the change is reported with the new tag's first value.
func TestCounterSourceChanged(t *testing.T) {
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	mustApply(t, m, st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: 50000, Good: true, SourceTime: at})
	b, _ := st.Marshal("m1")

	edited := newTestMapper(t, strings.Replace(testConfig, `good_count: { opcua: { server: plc, node: "ns=2;s=Good" } }
    running`, `good_count: { opcua: { server: plc, node: "ns=3;s=NewGood" } }
    running`, 1))
	st2 := NewState()
	if err := st2.Unmarshal("m1", b); err != nil {
		t.Fatal(err)
	}
	evs, changed, err := edited.Apply(st2, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=3;s=NewGood", Value: 12, Good: true, SourceTime: at.Add(time.Minute)})
	if err != nil || len(evs) != 1 || !slices.Equal(changed, []string{"m1"}) {
		t.Fatalf("new tag must set a new baseline, not reset: %+v %v %v", evs, changed, err)
	}
	// Reported (the agent logs it), also after a restart: pieces between
	// the old tag's last value and the new tag's first are not counted.
	if ev := evs[0]; ev.Delta != 0 || ev.Reset || ev.NewSource != "opcua:plc:ns=2;s=Good:" || ev.From != 50000 || ev.Raw != 12 {
		t.Errorf("the new tag's first value: %+v", ev)
	}
	evs, _, _ = edited.Apply(st2, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=3;s=NewGood", Value: 15, Good: true, SourceTime: at.Add(time.Minute + time.Second)})
	if len(evs) != 1 || evs[0].Delta != 3 || evs[0].NewSource != "" {
		t.Errorf("counting on from the new tag's value: %+v", evs)
	}
}

// The same node read from another server — the source's endpoint changed:
// a replacement PLC — is another counter: its value is a new baseline, not
// pieces (50,000 → 80,000) or a reset (50,000 → 120, counted as 120).
// A state kept without the server takes the first one read as its own.
func TestCounterServerChanged(t *testing.T) {
	m := newTestMapper(t, testConfig)
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	read := func(st *State, server string, v int, after time.Duration) ([]Event, []string) {
		t.Helper()
		evs, changed, err := m.Apply(st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Server: server, Value: v, Good: true, SourceTime: at.Add(after)})
		if err != nil {
			t.Fatal(err)
		}
		return evs, changed
	}
	for _, next := range []int{80000, 120} {
		st := NewState()
		read(st, "opc.tcp://10.0.0.5:4840", 50000, 0)
		if evs, _ := read(st, "opc.tcp://10.0.0.5:4840", 50010, time.Second); len(evs) != 2 || evs[0].Delta != 10 {
			t.Fatalf("the same server: %+v", evs)
		}
		evs, changed := read(st, "opc.tcp://10.0.0.9:4840", next, time.Minute)
		if len(evs) != 2 || len(changed) != 2 {
			t.Fatalf("%d on another server: %+v, changed %v", next, evs, changed)
		}
		for _, ev := range evs {
			if ev.Delta != 0 || ev.Reset || ev.NewServer != "opc.tcp://10.0.0.5:4840" || ev.From != 50010 || ev.Raw != float64(next) {
				t.Errorf("%d on another server: %+v", next, ev)
			}
		}
		if evs, _ := read(st, "opc.tcp://10.0.0.9:4840", next+5, time.Minute+time.Second); len(evs) != 2 || evs[0].Delta != 5 {
			t.Errorf("counting on from the new server's value: %+v", evs)
		}
	}
	// A stored state without the server (an older version's).
	st := NewState()
	read(st, "", 50000, 0)
	b, _ := st.Marshal("m1")
	if strings.Contains(string(b), "server") {
		t.Fatalf("a server noted for a sample without one: %s", b)
	}
	st2 := NewState()
	if err := st2.Unmarshal("m1", b); err != nil {
		t.Fatal(err)
	}
	evs, changed := read(st2, "opc.tcp://10.0.0.5:4840", 50000, time.Second)
	if len(evs) != 0 || !slices.Contains(changed, "m1") {
		t.Errorf("the first server read after an upgrade: %+v, changed %v (want none, m1 changed)", evs, changed)
	}
	if evs, _ := read(st2, "opc.tcp://10.0.0.5:4840", 50004, 2*time.Second); len(evs) != 2 || evs[0].Delta != 4 {
		t.Errorf("after an upgrade: %+v", evs)
	}
}

// A replaced mark set on a machine (its PLC replaced at the same address,
// counting from a value of its own): its counters start from the next
// value, wherever the old one's last was; another machine reading the same
// node counts on. The mark survives a restart (state round trip), and an
// unchanged mark changes nothing.
func TestMachineReplacedMark(t *testing.T) {
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	read := func(m *Mapper, st *State, v int, after time.Duration) map[string]Event {
		t.Helper()
		evs, _, err := m.Apply(st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Server: "opc.tcp://127.0.0.1:4840", Value: v, Good: true, SourceTime: at.Add(after)})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Event{}
		for _, ev := range evs {
			out[ev.Machine] = ev
		}
		return out
	}
	st := NewState()
	before := newTestMapper(t, testConfig)
	read(before, st, 1000, 0)
	if evs := read(before, st, 1010, time.Second); evs["m1"].Delta != 10 || evs["m2"].Delta != 10 {
		t.Fatalf("before the mark: %+v", evs)
	}
	marked := newTestMapper(t, strings.Replace(testConfig, "  - id: m1\n", "  - id: m1\n    replaced: 2026-12-02\n", 1))
	// The old device's last value again (a broker's retained copy, resent
	// at a reconnect) is no baseline: the replacement's first value is.
	if evs := read(marked, st, 1010, 50*time.Second); len(evs) != 0 {
		t.Errorf("the old device's last value again: %+v", evs)
	}
	evs := read(marked, st, 5000, time.Minute) // the new PLC comes with counts of its own
	if ev := evs["m1"]; ev.Delta != 0 || !ev.Replaced || ev.From != 1010 || ev.Raw != 5000 {
		t.Errorf("m1, replaced: %+v", ev)
	}
	if ev := evs["m2"]; ev.Delta != 3990 || ev.Replaced {
		t.Errorf("m2, not replaced: %+v", ev)
	}
	b, err := st.Marshal("m1")
	if err != nil {
		t.Fatal(err)
	}
	st2 := NewState()
	if err := st2.Unmarshal("m1", b); err != nil {
		t.Fatal(err)
	}
	if ev := read(marked, st2, 5007, time.Minute+time.Second)["m1"]; ev.Delta != 7 || ev.Replaced {
		t.Errorf("after a restart with the same mark: %+v", ev)
	}
}

// A counter's field that is in every message with a value the counter
// cannot use (beyond its rollover) is malformed, not absent: the "field
// missing" warning would send the engineer after a typo that is not there
// (the upgrade probe). A field not there at all is absent.
func TestUnusableFieldIsNotAbsent(t *testing.T) {
	m := newTestMapper(t, strings.Replace(testConfig, "scrap_count: { mqtt: { broker: b, topic: line/state, field: m2.scrap } }",
		"scrap_count: { mqtt: { broker: b, topic: line/state, field: m2.scrap }, rollover: 1000 }", 1))
	st := NewState()
	send := func(payload string) {
		t.Helper()
		if _, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state",
			Payload: []byte(payload), Good: true, ReceiveTime: time.Now()}); err == nil && strings.Contains(payload, "1060") {
			t.Errorf("%s: no error for a value beyond the rollover", payload)
		}
	}
	key := SignalKey{Machine: "m2", Signal: ScrapCount}
	for range 3 {
		send(`{"run": true, "m2": {"scrap": 1060}}`)
	}
	if a := st.Absent[key]; a != nil {
		t.Errorf("a field with an unusable value counted absent: %+v", a)
	}
	for range 3 {
		send(`{"run": true}`)
	}
	if a := st.Absent[key]; a == nil || a.N != 3 {
		t.Errorf("a field not there: absent %+v, want 3", a)
	}
}

// A source renamed in the configuration (the same server URL, node or
// topic and field) reads the same counter: counted on from its last value.
// Another node, or a state kept without its server, sets a new baseline.
func TestCounterSourceRenamed(t *testing.T) {
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	st := NewState()
	mustApply(t, newTestMapper(t, testConfig), st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
		Server: "opc.tcp://127.0.0.1:4840", Value: 50000, Good: true, SourceTime: at})
	b, _ := st.Marshal("m1")
	renamed := newTestMapper(t, strings.ReplaceAll(testConfig, "plc", "press-line"))
	for _, c := range []struct {
		name, server, addr string
		want               int // pieces counted for m1
	}{
		{"renamed", "opc.tcp://127.0.0.1:4840", "ns=2;s=Good", 7},
		{"renamed and moved to another server", "opc.tcp://10.0.0.9:4840", "ns=2;s=Good", 0},
	} {
		st := NewState()
		if err := st.Unmarshal("m1", b); err != nil {
			t.Fatal(err)
		}
		evs, _, err := renamed.Apply(st, connectors.Sample{Source: "press-line", Kind: connectors.KindOPCUA, Address: c.addr,
			Server: c.server, Value: 50007, Good: true, SourceTime: at.Add(time.Minute)})
		got := 0
		for _, ev := range evs {
			if ev.Machine == "m1" {
				got += int(ev.Delta)
			}
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %d pieces (%+v, %v), want %d", c.name, got, evs, err, c.want)
		}
		if cs := st.Machines["m1"].Counters[GoodCount]; cs.Src != "opcua:press-line:ns=2;s=Good:" || cs.Last != 50007 {
			t.Errorf("%s: state %+v", c.name, cs)
		}
	}
	for _, c := range []struct{ src, server string }{
		{"opcua:plc:ns=2;s=Other:", "opc.tcp://127.0.0.1:4840"}, // another node
		{"opcua:plc:ns=2;s=Good:", ""},                          // kept without its server
		{"mqtt:plc:ns=2;s=Good:", "opc.tcp://127.0.0.1:4840"},   // another kind
		{"opcua:a:b:ns=2;s=Good:", "opc.tcp://127.0.0.1:4840"},  // not a source name
	} {
		cs := &CounterState{Src: c.src, Server: c.server}
		x := extracted{b: &binding{srcID: "opcua:press-line:ns=2;s=Good:"}, server: "opc.tcp://127.0.0.1:4840"}
		if renamedSource(cs, x) {
			t.Errorf("%s (server %q) taken as the same counter renamed", c.src, c.server)
		}
	}
}

func TestPayloadErrorNamesSource(t *testing.T) {
	m := newTestMapper(t, testConfig)
	_, _, err := m.Apply(NewState(), connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: []byte(`{"run":"perhaps"}`), Good: true})
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.Source != "b" || pe.Address != "line/state" || pe.Field != "run" || !errors.Is(err, ErrBadValue) {
		t.Fatalf("err = %#v", err)
	}
	want := `value from b "line/state" field "run": running value "perhaps": want true/false, 1/0, running/stopped (run/stop) or on/off: unusable value`
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	cfg := &config.Config{Machines: []config.Machine{{ID: "a", GoodCount: &config.Counter{}}}}
	if _, err := New(cfg); err == nil {
		t.Error("New accepted a signal without source")
	}
}

func mustApply(t *testing.T, m *Mapper, st *State, s connectors.Sample) []Event {
	t.Helper()
	evs, _, err := m.Apply(st, s)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestRestartBeforeStopKeepsTheStopsKey: the stop carried the PLC's time,
// the restart only its receive time, which is earlier (the PLC clock runs
// ahead). The interval must keep the stop's start — with block_workcenter it
// is the key of the line opened at the stop, which the restart must close —
// and must not be negative.
func TestRestartBeforeStopKeepsTheStopsKey(t *testing.T) {
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	state := func(run bool, src, recv time.Time) []Event {
		t.Helper()
		p := `{"run": false}`
		if run {
			p = `{"run": true}`
		}
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state",
			Payload: []byte(p), Good: true, SourceTime: src, ReceiveTime: recv})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	state(true, at, at)
	stop := state(false, at.Add(10*time.Minute), at.Add(10*time.Minute))
	if len(stop) != 1 || stop[0].Kind != EventStopped {
		t.Fatalf("stop: %+v", stop)
	}
	run := state(true, time.Time{}, at.Add(5*time.Minute))
	if len(run) != 1 || run[0].Kind != EventRunning {
		t.Fatalf("run: %+v", run)
	}
	if !run[0].Start.Equal(stop[0].Start) || run[0].End.Before(run[0].Start) {
		t.Errorf("interval %v – %v, want it to start at the stop's %v and not end before", run[0].Start, run[0].End, stop[0].Start)
	}
}

// lookupCase is a field path, and the value lookup should find there.
type lookupCase struct {
	path string
	want any
	ok   bool
}

// checkLookups looks up each case's path in payload.
func checkLookups(t *testing.T, payload string, cases []lookupCase) {
	t.Helper()
	doc, err := parsePayload([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		got, ok := lookup(doc, tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("lookup(%q) = %#v, %v; want %#v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLookupPath(t *testing.T) {
	checkLookups(t, `{"a": {"b": 3}, "values": [{"id": "good", "v": 7}, {"id": "scrap", "v": 1}], "0": "zero"}`, []lookupCase{
		{"a.b", json.Number("3"), true},
		{"values.0.v", json.Number("7"), true},
		{"values.1.id", "scrap", true},
		{"0", "zero", true},        // an object key that looks like a number
		{"values.2.v", nil, false}, // past the end
		{"values.-1.v", nil, false},
		{"values.01.v", nil, false}, // not how JSON would name element 1
		{"values.x", nil, false},
		{"a.b.c", nil, false},
	})
}

// Numbers as payloads carry them: Go's own syntax (1_000, 0x1p4) is not a
// count, and a reason code sent as 7.0 (a gateway writing floats) is code 7.
func TestNumberSyntax(t *testing.T) {
	for _, v := range []string{"1_000", "0x1p4", "0x20", "1e", "+", "NaN", "Inf", " 12 3"} {
		if _, err := toNumber(v); !errors.Is(err, ErrBadValue) {
			t.Errorf("toNumber(%q) = %v, want a bad value", v, err)
		}
	}
	for v, want := range map[string]float64{"125": 125, " 130 ": 130, "-5": -5, "1.5e3": 1500, ".5": 0.5, "7.": 7, "+3": 3} {
		if f, err := toNumber(v); err != nil || f != want {
			t.Errorf("toNumber(%q) = %v, %v, want %v", v, f, err, want)
		}
	}
	// A PLC's REAL (OPC UA Float, Sparkplug Float) is the decimal it
	// shows, not float32's binary widened: 100.1 m, not 100.09999847412109,
	// so that its step to 100.2 is 0.1 m (mapping46).
	for v, want := range map[float32]float64{100.1: 100.1, 100.2: 100.2, 0.1: 0.1, 16777216: 16777216, 1.5: 1.5} {
		if f, err := toNumber(v); err != nil || f != want {
			t.Errorf("toNumber(float32(%v)) = %v, %v, want %v", v, f, err, want)
		}
	}
	for n, want := range map[string]string{"7.0": "7", "7": "7", "7.50": "7.5", "1e2": "100", "12345678901234567890": "12345678901234567890"} {
		if got, err := toReason(json.Number(n)); err != nil || got != want {
			t.Errorf("toReason(%s) = %q, %v, want %q", n, got, err, want)
		}
	}
	m := newTestMapper(t, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	mustApply(t, m, st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: []byte(`{"run":true}`), Good: true, ReceiveTime: at})
	evs := mustApply(t, m, st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: []byte(`{"run":false,"reason":7.0}`), Good: true, ReceiveTime: at.Add(time.Second)})
	if len(evs) == 0 || evs[0].Reason != "7" {
		t.Errorf("events %+v, want reason 7", evs)
	}
}

// A numeric reason code of zero is "0" however a source writes it: a
// float's -0 (an OPC UA Double or Float, a gateway's JSON -0.0 or -0) is
// the code 0, as validate says of a map's -0 (the small leads probe: it
// arrived as "-0", and the map's 0 did not match it). Text is kept as
// written.
func TestNegativeZeroReasonIsZero(t *testing.T) {
	negZero := math.Copysign(0, -1)
	for _, v := range []any{negZero, float32(negZero), json.Number("-0"), json.Number("-0.0"), json.Number("-0e3"), json.Number("0.0"), 0} {
		if got, err := toReason(v); err != nil || got != "0" {
			t.Errorf("toReason(%#v) = %q, %v, want \"0\"", v, got, err)
		}
	}
	if got, err := toReason("-0"); err != nil || got != "-0" {
		t.Errorf("toReason(text -0) = %q, %v, want it as written", got, err)
	}
}

// A source clock ahead of this machine's that is then set right (or one
// value stamped in the year 2100): the stops after it are taken, not ignored
// as older than the one stamped ahead; a redelivered older sample with the
// clock right is still stale.
func TestStopsAfterASourceClockWasAhead(t *testing.T) {
	m := newTestMapper(t, strings.Replace(testConfig, "field: run }", "field: run, timestamp_field: ts }", 1))
	st := NewState()
	now := time.Now().Truncate(time.Millisecond)
	kinds := func(evs []Event) (out []EventKind) {
		for _, e := range evs {
			out = append(out, e.Kind)
		}
		return out
	}
	send := func(run bool, ts time.Time, recv time.Time) []Event {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"run": run, "ts": ts.UnixMilli()})
		return mustApply(t, m, st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Payload: b, Good: true, ReceiveTime: recv})
	}
	base := now.Add(-10 * time.Minute)
	send(true, base, base)
	for _, ahead := range []time.Duration{time.Hour, 75 * 365 * 24 * time.Hour} {
		recv := base.Add(time.Minute)
		if got := kinds(send(false, recv.Add(ahead), recv)); !slices.Equal(got, []EventKind{EventStopped}) {
			t.Fatalf("stop stamped %v ahead: %v", ahead, got)
		}
		send(true, recv.Add(ahead+time.Second), recv.Add(time.Second))
		// The clock set right: the next stop and run are taken.
		recv = recv.Add(time.Minute)
		evs := send(false, recv, recv)
		if got := kinds(evs); !slices.Equal(got, []EventKind{EventStopped}) || evs[0].ClockBack <= 0 {
			t.Fatalf("the stop after the clock was set right (%v ahead): %+v", ahead, evs)
		}
		if got := kinds(send(true, recv.Add(time.Second), recv.Add(time.Second))); !slices.Equal(got, []EventKind{EventRunning}) {
			t.Fatalf("the run after it: %v", got)
		}
		// A late copy of the stop, the clock right: stale, reported.
		if got := kinds(send(false, recv, recv.Add(2*time.Second))); !slices.Equal(got, []EventKind{EventStale}) {
			t.Fatalf("a late copy of the stop: %v", got)
		}
		base = recv.Add(time.Minute)
	}
}

// A byte-order mark in front of a payload (some Windows gateways write
// one) is not part of the value: a bare number and JSON both read.
func TestPayloadWithByteOrderMark(t *testing.T) {
	m := newTestMapper(t, mqttHead+`  - id: m1
    workcenter: WC1
    good_count: { mqtt: { broker: b, topic: m1/good } }
  - id: m2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: m2, field: good } }
`)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	for i, c := range []struct{ topic, payload string }{
		{"m1/good", "\ufeff30200"}, {"m1/good", "\ufeff30205\r\n"},
		{"m2", "\ufeff{\"good\":7}"}, {"m2", "\ufeff{\"good\":9}"},
	} {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: c.topic, Payload: []byte(c.payload),
			Good: true, ReceiveTime: at.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatalf("%q: %v", c.payload, err)
		}
		if i%2 == 1 && (len(evs) != 1 || evs[0].Delta != map[int]float64{1: 5, 3: 2}[i]) {
			t.Errorf("%q: %+v", c.payload, evs)
		}
	}
}

// NaN, Infinity and -Infinity, which Python's json.dumps writes and JSON
// has not, cost only the fields that hold them: read as null, a signal
// bound to one gets no value (skipped, reported), the message's others
// count (the payloads probe: a "temp": NaN lost a stop). Inside strings
// they are text.
func TestNonFiniteNumbersCostOnlyTheirFields(t *testing.T) {
	send := stateSender(t, newTestMapper(t, testConfig), NewState())
	if _, err := send(`{"run": true, "m2": {"scrap": 5}}`); err != nil {
		t.Fatal(err)
	}
	evs, err := send(`{"run": false, "reason": "J", "temp": NaN, "hum": -Infinity, "m2": {"scrap": 7}, "note": "NaN, Infinity"}`)
	if err != nil {
		t.Errorf("NaN in a field nothing reads: %v", err)
	}
	var stop, scrap bool
	for _, ev := range evs {
		stop = stop || ev.Kind == EventStopped && ev.Reason == "J"
		scrap = scrap || ev.Kind == EventCount && ev.Delta == 2
	}
	if !stop || !scrap {
		t.Errorf("the message's other fields: %+v", evs)
	}
	evs, err = send(`{"run": true, "m2": {"scrap": Infinity}}`)
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.Field != "m2.scrap" || len(evs) != 1 || evs[0].Kind != EventRunning {
		t.Errorf("Infinity where the scrap counter reads: %+v, %v; want that signal skipped, named, the run taken", evs, err)
	}
	// A NaN reason code is no code, not a code cleared: the stop keeps the
	// reason it had (the review: read as null, it was cleared, and the
	// stop took the default loss).
	if evs, err := send(`{"run": false, "reason": NaN}`); err == nil || len(evs) != 1 || evs[0].Kind != EventStopped || evs[0].Reason != "J" {
		t.Errorf("a NaN reason with a stop: %+v, %v; want the reason skipped, the stop with J", evs, err)
	}
	q := nonFiniteJSON
	for in, want := range map[string]string{
		`{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \" Infinity"}`: `{"a": ` + q + `, "b": [` + q + `, ` + q + `], "c": "NaN \" Infinity"}`,
		`{"NaNa": 1, "x": NaNa}`: `{"NaNa": 1, "x": NaNa}`,
	} {
		if got, _ := nonFiniteToNull([]byte(in)); string(got) != want {
			t.Errorf("nonFiniteToNull(%s) = %s, want %s", in, got, want)
		}
	}
}

// A timestamp_field that is null is refused like "" (a cached value resent
// without its time would count as new: the payloads probe booked a stop),
// and one missing from the message is taken at its receive time and
// counted, so that a misspelt timestamp_field shows (status, log, validate
// --mqtt).
func TestTimestampNullOrMissing(t *testing.T) {
	st := NewState()
	send := stateSender(t, newTestMapper(t, strings.Replace(testConfig, "field: run }", "field: run, timestamp_field: ts }", 1)), st)
	now := time.Now().UTC()
	if _, err := send(fmt.Sprintf(`{"run": true, "ts": %q}`, now.Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	key := SignalKey{Machine: "m1", Signal: Running}
	evs, err := send(`{"run": false, "ts": null}`)
	if err == nil || len(evs) != 0 || st.TimeAbsent[key] != nil {
		t.Errorf("a null time: %+v, %v; want refused, nothing taken", evs, err)
	}
	for i := range AbsentWarn {
		if _, err := send(fmt.Sprintf(`{"run": %v}`, i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	if a := st.TimeAbsent[key]; a == nil || a.N != AbsentWarn || a.Field != "ts" || a.Topic != "line/state" {
		t.Errorf("time missing from %d messages: %+v", AbsentWarn, a)
	}
	if _, err := send(fmt.Sprintf(`{"run": true, "ts": %q}`, now.Add(time.Minute).Format(time.RFC3339Nano))); err != nil || st.TimeAbsent[key] != nil {
		t.Errorf("a time again: %v, %+v; want the count gone", err, st.TimeAbsent[key])
	}
	if _, err := CheckPayload(Running, "run", "tss", []byte(`{"run": true, "ts": "2026-12-03T10:00:00Z"}`), 0); !errors.Is(err, ErrNoTime) {
		t.Errorf("validate --mqtt with timestamp_field misspelt: %v", err)
	}
}

// An empty message (how MQTT clears a retained one) is no value and no
// fault; validate --mqtt, which reads one message, says it cannot check it.
func TestEmptyMessageIsNoValue(t *testing.T) {
	m := newTestMapper(t, testConfig)
	st := NewState()
	for _, p := range []string{"", " \n"} {
		evs, changed, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state",
			Payload: []byte(p), Good: true, ReceiveTime: time.Now()})
		if err != nil || len(evs) != 0 || len(changed) != 0 {
			t.Errorf("%q: %+v, %v, %v", p, evs, changed, err)
		}
	}
	if _, err := CheckPayload(Running, "run", "", nil, 0); err == nil {
		t.Error("validate --mqtt took an empty message for a good one")
	}
}

// A running value in text is read as the same number would be: a gateway
// that sends every value as a string ("1.0") loses no stop (the payloads
// probe).
func TestRunningNumberInText(t *testing.T) {
	for v, want := range map[any]bool{"1.0": true, "0.0": false, " 2 ": true, "0": false, 1.0: true, json.Number("0"): false} {
		if got, err := toRunning(v); err != nil || got != want {
			t.Errorf("toRunning(%#v) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []any{"NaN", "Inf", "yes please", ""} {
		if _, err := toRunning(v); !errors.Is(err, ErrBadValue) {
			t.Errorf("toRunning(%q): %v, want refused", v, err)
		}
	}
}

// An OPC UA Double NaN or Infinity on a reason node is no code (it read as
// the code "NaN"), and a NaN timestamp is said as such, not by the
// placeholder it is read as (the third review).
func TestNaNReasonCodeAndTime(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), float32(math.Inf(-1))} {
		x := extracted{b: &binding{signal: DowntimeReason}}
		if err := convert(&x, v); !errors.Is(err, ErrBadValue) || x.reason != "" {
			t.Errorf("reason %v: %q, %v; want refused", v, x.reason, err)
		}
	}
	_, err := CheckPayload(Running, "run", "ts", []byte(`{"run": true, "ts": NaN}`), 0)
	if err == nil || !strings.Contains(err.Error(), "timestamp NaN or Infinity") || strings.Contains(err.Error(), "\x00") {
		t.Errorf("a NaN time: %v", err)
	}
}

// stateSender applies payloads of topic line/state (broker b) to st.
func stateSender(t *testing.T, m *Mapper, st *State) func(payload string) ([]Event, error) {
	return func(payload string) ([]Event, error) {
		t.Helper()
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state",
			Payload: []byte(payload), Good: true, ReceiveTime: time.Now()})
		return evs, err
	}
}

// A structure or an array (an OPC UA ExtensionObject, an Int32 array) is no
// value of any signal: refused, saying what it is — it was the reason code
// "(structure)" or "[7 12]", booked with the default loss (the uatypes
// probe).
func TestStructuredValueIsNoSignalValue(t *testing.T) {
	for _, v := range []any{connectors.Structured{Type: "structure"}, connectors.Structured{Type: "Int32 array"}} {
		for _, sig := range []Signal{GoodCount, Running, DowntimeReason} {
			err := CheckValue(sig, v, 0)
			if !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), v.(connectors.Structured).Type) {
				t.Errorf("%s from %v: %v", sig, v, err)
			}
		}
		if err := CheckValue(Running, v, 0, "1"); !errors.Is(err, ErrBadValue) {
			t.Errorf("running with running_values from %v: %v", v, err)
		}
	}
	// An array says how to read one of its elements.
	if err := CheckValue(GoodCount, connectors.Structured{Type: "Int32 array", Array: true}, 0); err == nil || !strings.Contains(err.Error(), "set index:") {
		t.Errorf("an array node: %v, want it to say to set index:", err)
	}
}

// running_values on a Boolean node: true is 1 and false 0, so [1] and
// [true] both run (the review: [1] never read as running).
func TestRunningValuesOfABoolean(t *testing.T) {
	for _, vals := range [][]string{{"1"}, {"true"}, {"TRUE"}} {
		set := runValues(vals)
		if r, err := toState(true, set); err != nil || !r {
			t.Errorf("%q: true reads %v, %v", vals, r, err)
		}
		if r, err := toState(false, set); err != nil || r {
			t.Errorf("%q: false reads %v, %v", vals, r, err)
		}
	}
}

// A reason code written in the map with white space at an end (" JAM",
// "42 ": a copy from a PLC's text list) is the code the source sends: a
// source's code is read without its white space, so matched as written it
// never matched, and every such stop took the default loss (the ot-audit
// probe). An entry written without it wins over one written with it.
func TestReasonMapCodeWithWhiteSpace(t *testing.T) {
	m := newTestMapper(t, strings.Replace(testConfig, "map: { J: Jam }", `map: { " JAM": Jam, "42 ": Setup, "S": Short, "S ": Other }`, 1))
	for _, c := range []struct{ code, loss string }{{"JAM", "Jam"}, {"42", "Setup"}, {"S", "Short"}} {
		if loss, defaulted := m.Loss("m1", c.code); loss != c.loss || defaulted {
			t.Errorf("code %q: loss %q (defaulted %v), want %q", c.code, loss, defaulted, c.loss)
		}
	}
	st := NewState()
	send := stateSender(t, m, st)
	if _, err := send(`{"run": false, "reason": "JAM  "}`); err != nil {
		t.Fatal(err)
	}
	evs, err := send(`{"run": true}`)
	if err != nil || len(evs) != 1 || evs[0].Loss != "Jam" || evs[0].LossDefaulted {
		t.Fatalf("stop with code JAM: %+v, %v; want loss Jam", evs, err)
	}
}

// A JSON key with dots in its name (gateways name keys after their tags:
// "Line1.Press07.Good") is reached by the same dot path: where the parts do
// not lead through nested objects, parts joined with their dots name one
// key (the ot-audit probe: such a counter was a missing field for good). A
// path through nested objects wins; a key with a space in it is read.
func TestLookupKeyWithDots(t *testing.T) {
	checkLookups(t, `{"Line1.Press07.Good": 5, "m": {"a.b": {"c": 2}, "x": 1}, "a": {"b": 1}, "a.b": 9, "Good Parts": 3, "v.0": [{"w": 4}]}`, []lookupCase{
		{"Line1.Press07.Good", json.Number("5"), true},
		{"m.a.b.c", json.Number("2"), true},
		{"a.b", json.Number("1"), true}, // nested first
		{"Good Parts", json.Number("3"), true},
		{"v.0.0.w", json.Number("4"), true},
		{"Line1.Press07", nil, false},
		{"m.a.c", nil, false},
	})
}

// Two keys that are one code without their white space (" S" and "S ",
// neither written bare) give that code one loss, the same at every start:
// picked by the map's random order, a restart or a reload could book the
// same stop under another loss.
func TestReasonMapCodesOneWithoutWhiteSpaceDeterministic(t *testing.T) {
	cfg := strings.Replace(testConfig, "map: { J: Jam }", `map: { " S": Alpha, "S ": Beta, "  S": Gamma }`, 1)
	first, _ := newTestMapper(t, cfg).Loss("m1", "S")
	for range 50 {
		if loss, _ := newTestMapper(t, cfg).Loss("m1", "S"); loss != first {
			t.Fatalf("code S: loss %q at one start, %q at another", first, loss)
		}
	}
}

// NaN or Infinity in text — a bare payload (JavaScript's String(NaN),
// Python's json.dumps of a lone float writes NaN, its str() nan, C's
// printf inf), or a gateway that sends every value as a string — is no
// value, as it is in a JSON number's place: not a reason code "NaN" (a stop
// booked with the default loss, an unmapped code logged), not a state word
// that means a stop (running_values), and an OPC UA Double ±Infinity on a
// run node is not "running" (NaN was refused already). The signals51
// probe: each was taken as a value.
func TestNonFiniteTextIsNoValue(t *testing.T) {
	for _, p := range []string{"NaN", "Infinity", "-Infinity", "nan", "-nan", "inf", "-inf", `"NaN"`, " NaN\n"} {
		if _, err := CheckPayload(DowntimeReason, "", "", []byte(p), 0); !errors.Is(err, ErrBadValue) {
			t.Errorf("reason from bare %q: %v, want no value", p, err)
		}
		if _, err := CheckPayload(Running, "", "", []byte(p), 0, "1", "EXECUTE"); !errors.Is(err, ErrBadValue) {
			t.Errorf("running (running_values) from bare %q: %v, want no value", p, err)
		}
		if _, err := CheckPayload(DowntimeReason, "r", "", []byte(`{"r": `+strconv.Quote(strings.Trim(strings.TrimSpace(p), `"`))+`}`), 0); !errors.Is(err, ErrBadValue) {
			t.Errorf("reason from the string %q: %v, want no value", p, err)
		}
	}
	for _, v := range []any{math.Inf(1), math.Inf(-1), float32(math.Inf(1))} {
		if err := CheckValue(Running, v, 0); !errors.Is(err, ErrBadValue) {
			t.Errorf("running from %v: %v, want no value", v, err)
		}
	}
	// Codes that merely contain those letters stay codes.
	for _, p := range []string{"INFEED", "NANO", "JAM"} {
		if _, err := CheckPayload(DowntimeReason, "", "", []byte(p), 0); err != nil {
			t.Errorf("reason %q: %v", p, err)
		}
	}
	// A stop keeps its reason through a bare NaN on the reason topic, and
	// a state word's NaN starts no stop.
	m := newTestMapper(t, `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: "tcp://127.0.0.1:1883", client_id: pe }
machines:
  - id: m1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: run } }
    downtime_reason: { mqtt: { broker: b, topic: reason }, map: { J: Jam } }
  - id: m2
    workcenter: WC2
    running: { mqtt: { broker: b, topic: state }, running_values: [EXECUTE] }
`)
	st := NewState()
	at := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	send := func(topic, p string) ([]Event, error) {
		at = at.Add(time.Second)
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: topic, Payload: []byte(p), Good: true, ReceiveTime: at})
		return evs, err
	}
	for _, s := range [][2]string{{"run", "1"}, {"reason", "J"}, {"run", "0"}, {"state", "EXECUTE"}} {
		if _, err := send(s[0], s[1]); err != nil {
			t.Fatal(err)
		}
	}
	if evs, err := send("reason", "NaN"); err == nil || len(evs) != 0 {
		t.Errorf("bare NaN on the reason topic: %+v, %v; want refused, nothing taken", evs, err)
	}
	if evs, err := send("run", "1"); err != nil || len(evs) != 1 || evs[0].Kind != EventRunning || evs[0].Loss != "Jam" {
		t.Errorf("the stop's end: %+v, %v; want one line with the loss Jam", evs, err)
	}
	if evs, err := send("state", "NaN"); err == nil || len(evs) != 0 {
		t.Errorf("bare NaN as a state word: %+v, %v; want refused, no stop", evs, err)
	}
}

// NUL bytes after the value — a PLC's MQTT block that publishes its whole
// fixed-length string buffer (a STRING[32] holding "30200" and 27 NULs), a
// C client that sends the string's terminator — are not part of it: a bare
// number and JSON both read. Every such message was malformed ("control
// characters in text value", "trailing data": the signals51 probe), and
// the counter stood still. A NUL inside the value is still refused.
func TestPayloadWithTrailingNULs(t *testing.T) {
	m := newTestMapper(t, mqttHead+`  - id: m1
    workcenter: WC1
    good_count: { mqtt: { broker: b, topic: m1/good } }
  - id: m2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: m2, field: good } }
`)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	for i, c := range []struct{ topic, payload string }{
		{"m1/good", "30200\x00"}, {"m1/good", "30205" + strings.Repeat("\x00", 27)},
		{"m2", "{\"good\":7}\x00"}, {"m2", "\ufeff{\"good\":9}\r\n\x00\x00"},
	} {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: c.topic, Payload: []byte(c.payload),
			Good: true, ReceiveTime: at.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatalf("%q: %v", c.payload, err)
		}
		if i%2 == 1 && (len(evs) != 1 || evs[0].Delta != map[int]float64{1: 5, 3: 2}[i]) {
			t.Errorf("%q: %+v", c.payload, evs)
		}
	}
	for p, field := range map[string]string{"302\x0010": "", "{\"good\":\x0011}": "good", "{\"good\":11\x00}": "good", "\x00\x00": ""} {
		if _, err := CheckPayload(GoodCount, field, "", []byte(p), 0); err == nil {
			t.Errorf("%q read as a value", p)
		}
	}
}
