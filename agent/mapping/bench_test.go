package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
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
