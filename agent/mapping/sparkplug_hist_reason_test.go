package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// A stored reason is the stored stops' even when no live reason came before
// it (none yet, or the BIRTH gave the metric no value): not taken as the
// machine's current reason (the review of the historical stops).
func TestSparkplugHistoricalReasonWithNoLiveReasonBefore(t *testing.T) {
	const cfg = mqttHead + `  - id: p1
    workcenter: WC1
    running: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State/Running } }
    downtime_reason: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State/Code }, map: { J: Jam } }
`
	m := newTestMapper(t, cfg)
	st := NewState()
	at := func(min float64) time.Time { return spT0.Add(time.Duration(min * float64(time.Minute))) }
	run := func(v bool, min float64) sptest.Metric {
		return sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, Value: v, Timestamp: ms(at(min))}
	}
	code := func(v string, min float64) sptest.Metric {
		return sptest.Metric{Name: "State/Code", Datatype: sptest.String, Value: v, Timestamp: ms(at(min)), Historical: true}
	}
	hist := func(mt sptest.Metric) sptest.Metric { mt.Historical = true; return mt }
	send := func(topic string, recv float64, metrics ...sptest.Metric) []Event {
		evs, _, err := m.Apply(st, spSample(topic, sptest.Payload{Seq: 1, Metrics: metrics}, at(recv)))
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	send("spBv1.0/plant/DDATA/edge1/press1", 0, run(true, 0))
	send("spBv1.0/plant/DBIRTH/edge1/press1", 10, run(true, 10))
	evs := send("spBv1.0/plant/DDATA/edge1/press1", 10, code("J", 2), hist(run(false, 2)), hist(run(true, 3)), code("", 3))
	var line *Event
	for i := range evs {
		if evs[i].Kind == EventRunning {
			line = &evs[i]
		}
	}
	if line == nil || !line.Historical || line.Reason != "J" || line.Loss != "Jam" {
		t.Fatalf("stored stop: %+v, want reason J (Jam)", line)
	}
	if ms := st.Machines["p1"]; ms.ReasonSet || !ms.ReasonTime.IsZero() {
		t.Fatalf("current reason taken from the history: %q at %v", ms.Reason, ms.ReasonTime)
	}
}
