package mapping

import (
	"errors"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

const fuzzConfig = mqttHead + `  - id: m1
    workcenter: WC1
    good_count: { mqtt: { broker: b, topic: t, field: c.good, timestamp_field: ts }, rollover: 65536 }
    scrap_count: { mqtt: { broker: b, topic: t, field: c.scrap } }
    running: { mqtt: { broker: b, topic: t, field: run, timestamp_field: ts } }
    downtime_reason: { mqtt: { broker: b, topic: t, field: reason }, map: { J: Jam } }
  - id: m2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: t2 } }
  - id: m3
    workcenter: WC3
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/g/DDATA/e/d, field: Good }, rollover: 65536 }
    running: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/g/DDATA/e/d, field: Run } }
`

// FuzzExtract feeds arbitrary MQTT payloads through Apply: it must never
// panic, an error for the whole payload must leave the state untouched,
// and events must be sane.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{
		`{"c":{"good":10,"scrap":1},"run":true,"reason":"J","ts":"2026-01-01T08:00:00Z"}`,
		`{"c":{"good":3},"run":0,"ts":1767254400000}`,
		`{"run":"stopped","reason":null}`,
		`42`, `true`, `"running"`, `running`, ``, `{`, `[1,2]`, `{"c":{"good":1e400}}`,
		`{"c":{"good":-1}}`, `{"ts":"x"}`, "\x00\xff", `{"c":{"good":18446744073709551616}}`,
	} {
		f.Add([]byte(s), false, false)
	}
	for _, p := range []sptest.Payload{
		{Timestamp: 1767254400000, Seq: 3, Metrics: []sptest.Metric{{Name: "Good", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(-2)}, {Name: "Run", Datatype: sptest.Boolean, Value: true}}},
		{Seq: 4, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(7)}, {Name: "Run", IsNull: true}}},
		{Seq: -1, Metrics: []sptest.Metric{{Name: "Good", Datatype: sptest.DataSet, Dataset: true}, {Name: "Good", Value: "12"}}},
	} {
		f.Add(p.Encode(), false, false)
	}
	m := newTestMapper(f, fuzzConfig)
	f.Fuzz(func(t *testing.T, payload []byte, dup, initial bool) {
		st := NewState()
		at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
		base := connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "t", Good: true, ReceiveTime: at,
			Payload: []byte(`{"c":{"good":65000,"scrap":5},"run":true,"reason":"J"}`)}
		if _, _, err := m.Apply(st, base); err != nil {
			t.Fatal(err)
		}
		before := snapshotAll(t, st)
		s := base
		s.Payload, s.Duplicate, s.Initial, s.ReceiveTime = payload, dup, initial, at.Add(time.Second)
		evs, _, err := m.Apply(st, s)
		checkBare(t, m, st, s)
		checkSparkplug(t, m, st, s)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("not a PayloadError: %v", err)
			}
			// A field one signal cannot use skips that signal only (the
			// others are applied); a payload no signal can use changes
			// nothing.
			if after := snapshotAll(t, st); after != before && pe.Field == "" {
				t.Fatalf("error changed state: %v", err)
			}
		}
		for _, e := range evs {
			if e.Kind == EventCount && !(e.Delta > 0) && !(e.Reset && e.Raw == 0) && !e.StepBack && e.Behind == 0 {
				t.Fatalf("count event with delta %v: %+v", e.Delta, e)
			}
			if e.Kind == EventRunning && e.End.Before(e.Start) {
				t.Fatalf("negative downtime %v", e)
			}
		}
	})
}

// checkBare applies the payload to the bare-value topic (machine m2, whose
// state the caller does not snapshot).
func checkBare(t *testing.T, m *Mapper, st *State, s connectors.Sample) {
	t.Helper()
	s.Address = "t2"
	if _, _, err := m.Apply(st, s); err != nil {
		var pe *PayloadError
		if !errors.As(err, &pe) {
			t.Fatalf("bare: not a PayloadError: %v", err)
		}
	}
}

// checkSparkplug applies the payload as a Sparkplug B BIRTH and DATA
// message (machine m3, whose state the caller does not snapshot): never a
// panic, only PayloadErrors.
func checkSparkplug(t *testing.T, m *Mapper, st *State, s connectors.Sample) {
	t.Helper()
	for _, topic := range []string{"spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/DDATA/e/d", "spBv1.0/g/NDEATH/e"} {
		s.Address = topic
		if _, _, err := m.Apply(st, s); err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("sparkplug %s: not a PayloadError: %v", topic, err)
			}
		}
	}
}

func snapshotAll(t *testing.T, st *State) string {
	t.Helper()
	out := ""
	for _, id := range []string{"m1"} {
		if st.Machines[id] == nil {
			continue
		}
		b, err := st.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		out += id + "=" + string(b) + ";"
	}
	return out
}
