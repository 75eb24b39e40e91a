package mapping

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

// BenchmarkApplyOPCUA measures mapping one OPC UA counter value.
func BenchmarkApplyOPCUA(b *testing.B) {
	m := newTestMapper(b, testConfig)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	s := connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Good: true}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		s.Value, s.SourceTime = uint32(i), at.Add(time.Duration(i)*time.Millisecond)
		if _, _, err := m.Apply(st, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "samples/s")
}

// BenchmarkApplyMQTTJSON measures mapping one multi-signal JSON payload.
func BenchmarkApplyMQTTJSON(b *testing.B) {
	m := newTestMapper(b, testConfig)
	st := NewState()
	payloads := [][]byte{
		[]byte(`{"run":true,"reason":"","m2":{"scrap":10}}`),
		[]byte(`{"run":false,"reason":"J","m2":{"scrap":11}}`),
	}
	s := connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/state", Good: true,
		ReceiveTime: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		s.Payload = payloads[i%2]
		if _, _, err := m.Apply(st, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "samples/s")
}

// BenchmarkSparkplugBirths measures what the state keeps of the BIRTHs of
// an edge node of 20 devices × 5,000 metrics (Ignition's tag paths as
// names, every metric with an alias) of which one device's three metrics
// are read (spConfig): retained_MB is the heap they leave behind.
func BenchmarkSparkplugBirths(b *testing.B) {
	m := newTestMapper(b, spConfig)
	const devices, metrics = 20, 5000
	var births []connectors.Sample
	for d := range devices {
		dev := "dev" + strconv.Itoa(d)
		if d == 0 {
			dev = "press1"
		}
		p := sptest.Payload{Seq: d + 1}
		for i := range metrics {
			p.Metrics = append(p.Metrics, sptest.Metric{Name: "Line 4/Some Folder/Station " + strconv.Itoa(i/50) + "/Tag " + strconv.Itoa(i), Alias: uint64(d*metrics + i + 100), HasAlias: true, Datatype: sptest.Float, Value: float32(1)})
		}
		if d == 0 {
			p.Metrics = append(p.Metrics, sptest.Metric{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(10)})
		}
		births = append(births, spSample("spBv1.0/plant/DBIRTH/edge1/"+dev, p, spT0))
	}
	var retained uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		st := NewState()
		for _, s := range births {
			if _, _, err := m.Apply(st, s); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = after.HeapAlloc - before.HeapAlloc
		// Still read by alias: what is kept is what the signals need.
		evs, _, err := m.Apply(st, spSample("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: devices + 1, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(12)}}}, spT0.Add(time.Second)))
		if err != nil || spCount(evs, "p1", GoodCount) != 2 {
			b.Fatalf("%+v %v", evs, err)
		}
	}
	b.ReportMetric(float64(retained)/(1<<20), "retained_MB")
	b.ReportMetric(0, "ns/op")
}
