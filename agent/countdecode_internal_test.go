package agent

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
)

// sameAsEncodingJSON fails t unless unmarshalCount reads data as
// json.Unmarshal does: both an error, or the same record bit for bit.
func sameAsEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	var want countRecord
	wantErr := json.Unmarshal(data, &want)
	got, err := unmarshalCount(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json %v", data, err, wantErr)
	}
	if err != nil {
		return
	}
	if math.Float64bits(got.Delta) != math.Float64bits(want.Delta) || got.First != want.First || got.Last != want.Last ||
		got.Off != want.Off || got.Exact != want.Exact {
		t.Fatalf("%q: read as %+v, encoding/json %+v", data, got, want)
	}
	// decodeCount after it: the same checks, the same outcome.
	r := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 1, Data: data}
	c, err := decodeCount(r)
	ok := want.Delta >= 0 && want.Delta <= mapping.MaxCounter
	if (err == nil) != ok {
		t.Fatalf("%q: decodeCount %+v, %v; encoding/json read %+v", data, c, err, want)
	}
}

// TestUnmarshalCountAsEncodingJSON: the fast path reads what appendJSON
// writes, and every other form (older versions', spaced, reordered, a
// key twice, which encoding/json takes the last of) reads as
// encoding/json reads it, through it.
func TestUnmarshalCountAsEncodingJSON(t *testing.T) {
	written := []countRecord{
		{Delta: 1, First: 1765090000000, Last: 1765090000250},
		{Delta: 0, First: 0, Last: 0},
		{Delta: 0.015, First: 1, Last: 2, Exact: true},
		{Delta: 12.345, First: 1, Last: 2, Off: 3250, Exact: true},
		{Delta: 7, First: 1, Last: 2, Off: 1},
		{Delta: math.Copysign(0, -1), First: 1, Last: 2},
		{Delta: mapping.MaxCounter, First: math.MaxInt64, Last: math.MinInt64, Off: -1},
		{Delta: mapping.MaxCounter + 2, First: 1, Last: 2},
		{Delta: 1e-7, First: 1, Last: 2, Exact: true},
		{Delta: 1.5e-300, First: 1, Last: 2, Exact: true},
		{Delta: 1e21, First: 1, Last: 2},
		{Delta: 123456789012345680000, First: 1, Last: 2},
		{Delta: -2.5, First: -1, Last: -2, Exact: true},
		{Delta: math.MaxFloat64, First: 1, Last: 2},
		{Delta: math.SmallestNonzeroFloat64, First: 1, Last: 2, Exact: true},
		{Delta: 0.1 + 0.2, First: 1, Last: 2, Exact: true},
	}
	for _, c := range written {
		b, ok := c.appendJSON(nil)
		if !ok {
			t.Fatalf("%+v: appendJSON refused it", c)
		}
		if _, ok := parseCount(b); !ok {
			t.Errorf("%s: not read by the fast path", b)
		}
		sameAsEncodingJSON(t, b)
	}
	for _, s := range []string{
		`{"d":1,"f":2,"l":3}`,
		`{"d":-0,"f":-0,"l":0}`,
		`{"d":1E3,"f":2,"l":3}`,
		`{"d":1e+3,"f":2,"l":3}`,
		`{"d":1.25e-2,"f":2,"l":3,"x":true}`,
		`{"d":1e400,"f":2,"l":3}`,
		`{"d":-1e400,"f":2,"l":3}`,
		`{"d":1e-400,"f":2,"l":3}`,
		`{"d":0.10000000000000000555111512312578270211815834045410156250,"f":2,"l":3}`,
		`{"d":1,"f":9223372036854775807,"l":-9223372036854775808}`,
		`{"d":1,"f":9223372036854775808,"l":3}`,
		`{"d":1,"f":-9223372036854775809,"l":3}`,
		`{"d":1,"f":99999999999999999999999,"l":3}`,
		`{"d":1,"f":2.0,"l":3}`,
		`{"d":1,"f":2e3,"l":3}`,
		`{"d":1,"f":02,"l":3}`,
		`{"d":01,"f":2,"l":3}`,
		`{"d":.5,"f":2,"l":3}`,
		`{"d":1.,"f":2,"l":3}`,
		`{"d":+1,"f":2,"l":3}`,
		`{"d":-,"f":2,"l":3}`,
		`{"d":1e,"f":2,"l":3}`,
		`{"d":Inf,"f":2,"l":3}`,
		`{"d":NaN,"f":2,"l":3}`,
		`{"d":0x10,"f":2,"l":3}`,
		`{"d":1_0,"f":2,"l":3}`,
		`{"d":"1","f":2,"l":3}`,
		`{"d":null,"f":2,"l":3}`,
		`{"d":1}`,
		`{"d":1,"f":2}`,
		`{}`,
		``,
		`null`,
		`{"f":2,"l":3}`,
		`{"f":2,"l":3,"d":1}`,
		`{"d":1,"l":3,"f":2}`,
		`{"d":1,"f":2,"l":3,"x":true,"o":4}`,
		`{"d":1,"f":2,"l":3,"o":0}`,
		`{"d":1,"f":2,"l":3,"o":4.5}`,
		`{"d":1,"f":2,"l":3,"x":false}`,
		`{"d":1,"f":2,"l":3,"x":null}`,
		`{"d":1,"f":2,"l":3,"x":1}`,
		`{"d":1,"f":2,"l":3,"x":true,"x":false}`,
		`{"d":1,"f":2,"l":3,"d":4}`,
		`{"d":1,"f":2,"l":3,"o":4,"o":5}`,
		`{"D":1,"F":2,"L":3,"X":true}`,
		`{"d":1,"f":2,"l":3,"y":4}`,
		`{"d":1,"f":2,"l":3,"q":{"a":[1,2]}}`,
		`{ "d": 1, "f": 2, "l": 3 }`,
		`{"d":1 ,"f":2,"l":3}`,
		` {"d":1,"f":2,"l":3}`,
		`{"d":1,"f":2,"l":3} `,
		"{\"d\":1,\"f\":2,\"l\":3}\n",
		`{"d":1,"f":2,"l":3}}`,
		`{"d":1,"f":2,"l":3}x`,
		`{"d":1,"f":2,"l":3}{}`,
		`{"d":1,"f":2,"l":3,}`,
		`{"d":1,"f":2,"l":3`,
		`{"d":1,"f":2,"l":`,
		`{"\u0064":1,"f":2,"l":3}`,
		`[1,2,3]`,
	} {
		sameAsEncodingJSON(t, []byte(s))
	}
}

// TestParseCountAllocatesNothing: the fast path reads a record without an
// allocation (encoding/json: one a record).
func TestParseCountAllocatesNothing(t *testing.T) {
	b := mustJSON(countRecord{Delta: 12.345, First: 1765090000000, Last: 1765090000250, Off: 3250})
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := parseCount(b); !ok {
			t.Fatalf("%s: not read by the fast path", b)
		}
	}); n != 0 {
		t.Errorf("%v allocations a record, want none", n)
	}
}

// FuzzDecodeCount: whatever the bytes, unmarshalCount reads them as
// json.Unmarshal does, and decodeCount takes or refuses them as it would.
func FuzzDecodeCount(f *testing.F) {
	for _, c := range []countRecord{
		{Delta: 1, First: 1765090000000, Last: 1765090000250},
		{Delta: 0.015, First: 1765090000000, Last: 1765090000250},
		{Delta: 12.345, First: 1, Last: 2, Off: 3250},
		{Delta: 1e-7, First: 1, Last: 2},
		{Delta: 1e21, First: -1, Last: 2, Off: 5},
		{Delta: math.Copysign(0, -1), First: 1, Last: 2},
	} {
		f.Add(mustJSON(c))
	}
	f.Add([]byte(`{"d":1,"f":2,"l":3,"d":4}`))
	f.Add([]byte(`{ "d": 1.5e3, "l": 3, "f": 2 }`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsEncodingJSON(t, data)
	})
}

// BenchmarkDecodeCount: decodeCount of count records as mustJSON stores
// them — an integer delta, a fractional (exact) one, with the offset of a
// value the broker kept — and of one in another form (spaced: through
// encoding/json), in ns and allocations a record.
func BenchmarkDecodeCount(b *testing.B) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"int", mustJSON(countRecord{Delta: 1, First: 1765090000000, Last: 1765090000250})},
		{"int-big", mustJSON(countRecord{Delta: 123456, First: 1765090000000, Last: 1765093600000})},
		{"frac", mustJSON(countRecord{Delta: 0.015, First: 1765090000000, Last: 1765090000250})},
		{"frac-off", mustJSON(countRecord{Delta: 12.345, First: 1765090000000, Last: 1765090000250, Off: 3250})},
		{"spaced", []byte(`{"d": 1, "f": 1765090000000, "l": 1765090000250}`)},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 1, Data: c.data}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeCount(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
