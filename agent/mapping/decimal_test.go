package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// A counter's pieces are the decimal its step times its factor makes, as
// a float64 nearest to it, and a float counter's step is the difference of
// its decimals: added up, they hold what was counted (the rounding review). The
// float64 product of 103,827 and 0.45359237 is 47095.134999990005, an ulp
// above 47095.13499999, and 1234.567 less 1230.001 is 4.566000000000031.
func TestCounterStepsAreDecimals(t *testing.T) {
	const y = `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
opcua:
  - { name: plc, endpoint: "opc.tcp://127.0.0.1:4840" }
machines:
  - id: lb
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=2;s=Pounds" }, factor: 0.45359237 }
  - id: flow
    workcenter: WC2
    good_count: { opcua: { server: plc, node: "ns=2;s=Litres" }, factor: 0.001 }
`
	m := newTestMapper(t, y)
	st := NewState()
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	step := func(node string, v any) Event {
		t.Helper()
		at = at.Add(time.Second)
		evs, _, err := m.Apply(st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: node, Value: v, Good: true, SourceTime: at})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Kind == EventCount {
				return ev
			}
		}
		return Event{}
	}
	step("ns=2;s=Pounds", int64(0)) // the baseline
	if ev := step("ns=2;s=Pounds", int64(103827)); ev.Delta != 103827 || ev.Pieces != 47095.13499999 {
		t.Errorf("103827 lb at 0.45359237: delta %v, pieces %v, want 47095.13499999", ev.Delta, ev.Pieces)
	}
	step("ns=2;s=Litres", 1230.001)
	if ev := step("ns=2;s=Litres", 1234.567); ev.Delta != 4.566 || ev.Pieces != 0.004566 {
		t.Errorf("1230.001 to 1234.567 l: delta %v, pieces %v, want 4.566 and 0.004566", ev.Delta, ev.Pieces)
	}
	// A flow meter read in litres to 3 decimals: each step is its
	// decimal, so that the steps add up to the last value less the first.
	r := int64(1234567)
	noisy := 0
	for i := range 20000 {
		d := 100 + int64(i%7)*13 // 0.100 to 0.178 l
		r += d
		ev := step("ns=2;s=Litres", float64(r)/1000)
		if want := float64(d) / 1000; ev.Delta != want {
			if noisy++; noisy <= 3 {
				t.Errorf("%v to %v l: delta %v, want %v", float64(r-d)/1000, float64(r)/1000, ev.Delta, want)
			}
		}
	}
	if noisy > 0 {
		t.Errorf("%d of 20000 steps of a flow meter are not their decimal", noisy)
	}
}
