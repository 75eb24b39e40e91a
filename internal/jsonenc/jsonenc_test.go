package jsonenc

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Each value is appended as encoding/json marshals it, or refused where
// encoding/json escapes or refuses it.
func TestSameAsEncodingJSON(t *testing.T) {
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, 1.5e-9, 1e20, 1e21, 1.2345e22, -3e-10,
		123456789.125, 4294967295, 1 << 53, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.30000000000000004}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		floats = append(floats, math.Float64frombits(r.Uint64()), r.NormFloat64()*math.Pow(10, float64(r.IntN(60)-30)))
	}
	floats = append(floats, math.NaN(), math.Inf(1), math.Inf(-1))
	for _, f := range floats {
		want, err := json.Marshal(f)
		got, ok := Float([]byte("x"), f)
		if ok != (err == nil) || ok && string(got) != "x"+string(want) {
			t.Errorf("Float(%v) = %s %v, encoding/json %s %v", f, got, ok, want, err)
		}
	}
	east := time.FixedZone("east", 5*3600+30*60)
	taken := []time.Time{{}, time.Now(), time.Now().UTC(), time.Now().In(east), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, r.Int64()).In(east)}
	times := append(taken, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("odd", 30)), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("far", -25*3600)))
	for i, tm := range times {
		want, err := json.Marshal(tm)
		got, ok := Time(nil, tm)
		if ok && (err != nil || string(got) != string(want)) || !ok && i < len(taken) {
			t.Errorf("Time(%v) = %s %v, encoding/json %s %v", tm, got, ok, want, err)
		}
	}
	for _, s := range []string{"", "opcua:plc:ns=2;s=Good:", "a\"b", `a\b`, "<", ">", "&", "\x00", "\x1f", "\x7f", "é", "\u2028", "\xff", " ~"} {
		want, _ := json.Marshal(s)
		got, ok := String(nil, s)
		if ok && string(got) != string(want) {
			t.Errorf("String(%q) = %s, encoding/json %s", s, got, want)
		}
		if !ok && s != "" && s[0] == 'o' {
			t.Errorf("String(%q) refused", s)
		}
	}
}
