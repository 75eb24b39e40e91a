package mapping

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

var timeType = reflect.TypeFor[time.Time]()

// randomValue is a value of type t, zero about a third of the time, with
// the odd values encoding/json escapes or refuses now and then.
func randomValue(r *rand.Rand, t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	if r.IntN(3) == 0 {
		return v
	}
	if t == timeType {
		times := []time.Time{time.Now(), time.Now().UTC(), time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
			time.Now().In(time.FixedZone("x", -3*3600-30*60)), time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}
		v.Set(reflect.ValueOf(times[r.IntN(len(times))]))
		return v
	}
	switch t.Kind() {
	case reflect.String:
		strs := []string{"plain", "opcua:plc:ns=2;s=Good:", "mqtt:b:line/m1:good", "a<b", "é", `q"`}
		v.SetString(strs[r.IntN(len(strs))])
	case reflect.Float64:
		fs := []float64{1, -1, 0.1, 1e-7, 1.5e21, 4294967295, 123.456, math.Copysign(0, -1), r.NormFloat64() * 1e6, math.NaN()}
		v.SetFloat(fs[r.IntN(len(fs))])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(r.Int64N(2000) - 1000)
	case reflect.Uint64:
		v.SetUint(r.Uint64())
	case reflect.Slice:
		n := r.IntN(7)
		s := reflect.MakeSlice(t, n, n)
		for i := range n {
			s.Index(i).Set(randomValue(r, t.Elem()))
		}
		v.Set(s)
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				v.Field(i).Set(randomValue(r, t.Field(i).Type))
			}
		}
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		p.Elem().Set(randomValue(r, t.Elem()))
		v.Set(p)
	case reflect.Map:
		m := reflect.MakeMap(t)
		m.SetMapIndex(reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem())
		v.Set(m)
	}
	return v
}

// A counters-only state is encoded by hand byte for byte as encoding/json
// encodes it, every field of CounterState included (one added later is
// missing from appendCounter and fails here); any other state, or a value
// encoding/json escapes or refuses, is left to encoding/json.
func TestMarshalFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fast := 0
	for i := range 20000 {
		ms := &MachineState{Counters: map[Signal]*CounterState{}}
		for _, sig := range []Signal{GoodCount, "scrap_count", "z_count"}[:r.IntN(4)] {
			if r.IntN(10) == 0 {
				ms.Counters[sig] = nil
				continue
			}
			c := randomValue(r, reflect.TypeFor[CounterState]()).Interface().(CounterState)
			ms.Counters[sig] = &c
		}
		if i%2 == 1 { // now and then another field set too
			v := reflect.ValueOf(ms).Elem()
			f := 1 + r.IntN(v.NumField()-1)
			v.Field(f).Set(randomValue(r, v.Field(f).Type()))
		}
		want, werr := json.Marshal(ms)
		got, ok := appendCountersOnly(nil, ms)
		if ok {
			fast++
			if werr != nil || string(got) != string(want) {
				t.Fatalf("fast path\n%s\nencoding/json (%v)\n%s", got, werr, want)
			}
		}
		st := &State{Machines: map[string]*MachineState{"m": ms}}
		b, err := st.Marshal("m")
		if (err == nil) != (werr == nil) || err == nil && string(b) != string(want) {
			t.Fatalf("Marshal\n%s (%v)\nencoding/json (%v)\n%s", b, err, werr, want)
		}
		if b, err := st.AppendMarshal([]byte("prefix"), "m"); err == nil && string(b) != "prefix"+string(want) {
			t.Fatalf("AppendMarshal\n%s\nencoding/json\n%s", b, want)
		}
	}
	if fast < 2000 {
		t.Fatalf("fast path taken %d times of 20,000", fast)
	}
	// Each field of MachineState but Counters keeps the state from the
	// fast path (one added later and not checked by appendCountersOnly
	// fails here).
	typ := reflect.TypeFor[MachineState]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "Counters" || !f.IsExported() {
			continue
		}
		ms := &MachineState{}
		v := reflect.ValueOf(ms).Elem().Field(i)
		for v.IsZero() {
			v.Set(randomValue(r, f.Type))
		}
		if b, ok := appendCountersOnly(nil, ms); ok {
			t.Errorf("a state with %s set took the fast path: %s", f.Name, b)
		}
	}
}

// The bytes appendCounter keeps between calls (counterEnc) are those of
// the counter as it is now: a counter marshalled again and again while its
// fields change — its steps changed in place too, as noteIncrease does,
// seen and seen_recv the same time or not, copies of it changed apart —
// is always encoded as encoding/json encodes it.
func TestMarshalKeptBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	typ := reflect.TypeFor[CounterState]()
	at := time.Date(2026, 1, 1, 8, 0, 0, 123456789, time.UTC)
	counters := []*CounterState{{Src: "opcua:plc:ns=2;s=Good:", Last: 1, Seen: at, SeenRecv: at,
		Steps: []RateStep{{300, 1}, {300, 1.25}}}}
	for i := range 20000 {
		c := counters[r.IntN(len(counters))]
		switch n := r.IntN(10); {
		case n == 0 && len(counters) < 4: // a copy, changed apart from here on
			cp := *c
			cp.Steps = slices.Clone(c.Steps)
			counters = append(counters, &cp)
		case n == 1 && len(c.Steps) > 0: // a step changed in place
			st := &c.Steps[r.IntN(len(c.Steps))]
			st.D, st.S = r.Float64()*100, float64(r.IntN(3))
			if r.IntN(20) == 0 {
				st.D = math.Copysign(0, -1)
			}
		case n == 2: // a step added, the oldest let go (noteIncrease)
			c.Steps = append(c.Steps, RateStep{D: float64(r.IntN(500)), S: r.Float64()})
			if len(c.Steps) > stepsKept {
				c.Steps = append(c.Steps[:0], c.Steps[len(c.Steps)-stepsKept:]...)
			}
		case n == 3:
			c.SeenRecv = c.Seen
		case n == 4:
			c.Seen = c.Seen.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
			c.SeenRecv = c.Seen
		default: // any field
			f := r.IntN(typ.NumField())
			if typ.Field(f).IsExported() {
				reflect.ValueOf(c).Elem().Field(f).Set(randomValue(r, typ.Field(f).Type))
			}
		}
		for _, c := range counters {
			ms := &MachineState{Counters: map[Signal]*CounterState{GoodCount: c}}
			want, werr := json.Marshal(ms)
			st := &State{Machines: map[string]*MachineState{"m": ms}}
			b, err := st.Marshal("m")
			if (err == nil) != (werr == nil) || err == nil && string(b) != string(want) {
				t.Fatalf("step %d: Marshal\n%s (%v)\nencoding/json (%v)\n%s", i, b, err, werr, want)
			}
		}
	}
}

// BenchmarkMarshalCounters: the state of a machine with a good and a
// scrap counter, as the IngestOPCUA benchmark's are.
func BenchmarkMarshalCounters(b *testing.B) {
	at := time.Date(2026, 1, 1, 8, 0, 0, 123456789, time.UTC)
	c := CounterState{Src: "opcua:plc:ns=2;s=M001.Good:", Last: 8997, Seen: at, SeenRecv: at, StepAt: at, StepD: 297, Watch: 7,
		Steps: []RateStep{{300, 1}, {300, 1}, {300, 1}, {300, 1}, {300, 1}}}
	s := c
	s.Src = "opcua:plc:ns=2;s=M001.Scrap:"
	st := &State{Machines: map[string]*MachineState{"m": {Counters: map[Signal]*CounterState{GoodCount: &c, "scrap_count": &s}}}}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Marshal("m"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(st.Machines["m"]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
