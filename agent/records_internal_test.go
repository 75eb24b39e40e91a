package agent

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// The records and states encoded by hand (countRecord, machineMeta) are
// what encoding/json writes of them, byte for byte, or left to it.
func TestHandEncodedRecords(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	floats := []float64{0, 1, 3, 1200, 0.125, 1.485, 1e-7, 2e21, -4, math.Copysign(0, -1), math.NaN()}
	ints := []int64{0, 1, -1, 1767254400000, math.MaxInt64, math.MinInt64}
	pick := func(n int) int { return r.IntN(n) }
	for range 5000 {
		c := countRecord{Delta: floats[pick(len(floats))], First: ints[pick(len(ints))], Last: ints[pick(len(ints))], Off: ints[pick(len(ints))], Exact: r.IntN(2) == 0}
		want, err := json.Marshal(c)
		if got, ok := c.appendJSON(nil); ok && (err != nil || string(got) != string(want)) || !ok && err == nil {
			t.Fatalf("%+v: %s %v, encoding/json %s %v", c, got, ok, want, err)
		}
		off := ints[pick(len(ints))]
		m := machineMeta{Good: floats[pick(len(floats))], Scrap: floats[pick(len(floats))], Sum: r.Uint32() >> pick(33), Src: ints[pick(len(ints))]}
		if r.IntN(2) == 0 {
			m.Off = &off
		}
		if r.IntN(8) > 0 {
			m.Mapping = make([]byte, r.IntN(40))
			for i := range m.Mapping {
				m.Mapping[i] = byte(r.Uint32())
			}
		}
		want, err = json.Marshal(m)
		got, ok := m.appendJSON(nil)
		if ok && (err != nil || string(got) != string(want)) || !ok && err == nil && m.Mapping != nil {
			t.Fatalf("%+v: %s %v, encoding/json %s %v", m, got, ok, want, err)
		}
		if err == nil && string(mustJSON(m)) != string(want) {
			t.Fatalf("mustJSON(%+v) = %s, encoding/json %s", m, mustJSON(m), want)
		}
	}
}
