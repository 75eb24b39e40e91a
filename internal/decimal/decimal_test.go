package decimal

import (
	"math"
	"math/big"
	"strconv"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		m    int64
		k    int
		note string
	}{
		{0, 0, 0, "zero"},
		{17, 17, 0, "an integer"},
		{-3, -3, 0, "a negative integer"},
		{1 << 53, 1 << 53, 0, "2^53"},
		{0.1, 1, 1, "0.1"},
		{0.1 + 0.2, 3, 1, "0.1+0.2 (an ulp above 0.3)"},
		{1.005, 1005, 3, "1.005 (below it in binary)"},
		{0.45359237, 45359237, 8, "lb to kg"},
		{0.00045359237, 45359237, 11, "lb to t"},
		{103827 * 0.45359237, 4709513499999, 8, "the float64 product, an ulp off its decimal"},
		{47095.13499999, 4709513499999, 8, "that decimal"},
		{0.05499999999999999, 55, 3, "float noise: 12 digits"},
		{682.7849999995, 6827849999995, 10, "13 digits: a decimal of its own"},
		{-1.005, -1005, 3, "negative"},
		{99.99999999999999, 100, 0, "an ulp below 100"},
		{12345678901.235, 12345678901235, 3, "ten billion and a half cent"},
		{123456789.12345678, 1234567891235, 4, "past 15 digits from 10^8 up: 4 decimals"},
	} {
		m, k, ok := Of(tc.v)
		if !ok || m != tc.m || k != tc.k {
			t.Errorf("%s: Of(%v) = %d, %d, %v; want %d, %d", tc.note, tc.v, m, k, ok, tc.m, tc.k)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e30, 1e-30} {
		if m, k, ok := Of(v); ok {
			t.Errorf("Of(%v) = %d, %d, true; want no decimal", v, m, k)
		}
	}
}

// Every decimal of up to 15 significant digits is its own float64's
// decimal: Of gives it back, and Float makes that float64.
func TestOfRoundTrips(t *testing.T) {
	x := uint64(88172645463325252)
	for range 200000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		m := int64(x % 1_000_000_000_000_000)
		for m != 0 && m%10 == 0 {
			m /= 10
		}
		k := int(x>>50) % 23
		if m == 0 {
			continue
		}
		f, err := strconv.ParseFloat(strconv.FormatInt(m, 10)+"e-"+strconv.Itoa(k), 64)
		if err != nil {
			t.Fatal(err)
		}
		if g := Float(m, k); g != f {
			t.Fatalf("Float(%d, %d) = %v, want %v", m, k, g, f)
		}
		if gm, gk, ok := Of(f); !ok || gm != m || gk != k {
			t.Fatalf("Of(%v) = %d, %d, %v; want %d, %d", f, gm, gk, ok, m, k)
		}
	}
}

// Sums of steps hold their decimal: 200,000 steps of 0.015 are 3,000,
// where float64's sum is off, and a flow meter's differences add up to its
// last value less its first.
func TestAddHoldsTheDecimal(t *testing.T) {
	for _, step := range []float64{0.015, 0.005, 0.025, 0.1, 0.45359237, 0.00045359237, 0.08333333, 0.123456789} {
		var s, f float64
		n := 200_000
		for range n {
			s = Add(s, step)
			f += step
		}
		m, k, _ := Of(step)
		want := Float(m*int64(n), k)
		if s != want {
			t.Errorf("%d steps of %v: %v, want %v (float64's sum %v)", n, step, s, want, f)
		}
	}
	var sum float64
	prev := 1234.567
	for i := range 100000 {
		next := Float(1234567+int64(i+1)*137, 3)
		sum = Add(sum, Sub(next, prev))
		prev = next
	}
	if want := Float(100000*137, 3); sum != want {
		t.Errorf("a flow meter's steps add up to %v, want %v", sum, want)
	}
}

func TestMul(t *testing.T) {
	for _, tc := range []struct{ a, b, want float64 }{
		{103827, 0.45359237, 47095.13499999},
		{29, 0.005, 0.145},
		{3, 0.1, 0.3},
		{4.566, 0.001, 0.004566},
		{12, 0.08333333, 0.99999996},
		{7, 1, 7},
		{-2, 0.015, -0.03},
		// 17 digits: cut to 15, half to even.
		{123456789, 3.785411784, 467334783.895402},
	} {
		if got := Mul(tc.a, tc.b); got != tc.want {
			t.Errorf("Mul(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if got := Mul(1<<53, 10000); got != (1<<53)*10000 {
		t.Errorf("Mul(2^53, 10000) = %v, want %v", got, float64(1<<53)*10000)
	}
}

// Round rounds the decimal half away from zero, like a big.Rat of it.
func TestRoundAgainstBigRat(t *testing.T) {
	x := uint64(0x9E3779B97F4A7C15)
	for range 100000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		m := int64(x % 1_000_000_000_000_000)
		k := int(x>>52) % 13
		if x&1 == 1 {
			m = -m
		}
		v := Float(m, k)
		r := new(big.Rat).SetFrac(big.NewInt(m), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil))
		r.Mul(r, big.NewRat(100, 1))
		num := new(big.Int).Abs(r.Num())
		q := new(big.Int).Quo(new(big.Int).Add(new(big.Int).Mul(num, big.NewInt(2)), r.Denom()), new(big.Int).Mul(r.Denom(), big.NewInt(2)))
		if m < 0 {
			q.Neg(q)
		}
		want, _ := new(big.Rat).SetFrac(q, big.NewInt(100)).Float64()
		if want == 0 {
			want = 0 // not -0
		}
		if got := Round(v, 2); got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("Round(%v, 2) = %v, want %v", v, got, want)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	for _, step := range []float64{1, 0.015, 0.45359237} {
		b.Run(strconv.FormatFloat(step, 'g', -1, 64), func(b *testing.B) {
			var s float64
			for b.Loop() {
				s = Add(s, step)
			}
		})
	}
}

func BenchmarkMul(b *testing.B) {
	for b.Loop() {
		Mul(103827, 0.45359237)
	}
}

// RoundStep rounds a decimal to a multiple of a unit's rounding as Odoo's
// float_round(precision_rounding=...) does (HALF-UP), of the decimals, not
// of their float64s: 0.125 / 0.01 is 12.499999999999998 in float64.
func TestRoundStep(t *testing.T) {
	for _, c := range []struct{ v, step, want float64 }{
		{0.125, 0.01, 0.13}, {0.124, 0.01, 0.12}, {0.4, 1, 0}, {0.5, 1, 1}, {1.6, 1, 2}, {1.5, 1, 2},
		{2, 1, 2}, {0.7, 0.25, 0.75}, {0.3, 0.25, 0.25}, {-0.125, 0.01, -0.13}, {1.005, 0.01, 1.01},
		{47095.13499999, 0.001, 47095.135}, {7, 5, 5}, {7.5, 5, 10}, {0.125, 0, 0.125}, {0.125, 0.001, 0.125},
	} {
		if got := RoundStep(c.v, c.step); got != c.want {
			t.Errorf("RoundStep(%v, %v) = %v, want %v", c.v, c.step, got, c.want)
		}
	}
}
