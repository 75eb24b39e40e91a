package odoo

import (
	"math"
	"math/big"
	"testing"
)

// Round2 books what Odoo's float_round (HALF-UP, 2 digits) makes of the
// quantity a counter really counted, however its steps added up in float64
// (mapping46): a thousand steps of 0.1 are 100, and 11 steps of 0.005 (a
// counter in 5 g for an order in kg) are 0.055, booked 0.06 — their float
// sum, 0.05499999999999999, rounded to 0.05.
func TestRound2OfSums(t *testing.T) {
	sum := func(n int, step float64) float64 {
		var s float64
		for range n {
			s += step
		}
		return s
	}
	for _, tc := range []struct {
		name string
		v    float64
		want float64
	}{
		{"1000 steps of 0.1", sum(1000, 0.1), 100},
		{"3 steps of 0.1", sum(3, 0.1), 0.3},
		{"201 steps of 0.005", sum(201, 0.005), 1.01},
		{"11 steps of 0.005", sum(11, 0.005), 0.06},
		{"a step of 29 at 0.005", 29 * func() float64 { return 0.005 }(), 0.15},
		{"a step of 11 at 0.015", 11 * func() float64 { return 0.015 }(), 0.17},
		{"1.005 typed", 1.005, 1.01},
		{"2.675 typed", 2.675, 2.68},
		{"a part below", 0.004, 0},
		{"negative", -1.005, -1.01},
		{"large", 2000000.125, 2000000.13},
		{"already round", 17.35, 17.35},
		// Past 12 digits the hundredths are kept: 12 significant digits
		// would cut them.
		{"ten billion and a half cent", 12345678901.235, 12345678901.24},
		{"ten billion", 12345678901.23, 12345678901.23},
	} {
		if got := Round2(tc.v); got != tc.want {
			t.Errorf("%s: Round2(%v) = %v, want %v", tc.name, tc.v, got, tc.want)
		}
	}
}

// odooRound is Odoo's float_round(v, precision_digits=2), HALF-UP, as
// odoo/tools/float_utils.py has it in 18.0: the value times 100 (the
// inverse of the rounding factor), plus an epsilon of 2^-50 of it away
// from zero, rounded half away from zero, divided by 100. (Earlier
// versions divide by 0.01 and add 2^-52 of it.)
func odooRound(v float64) float64 {
	if v == 0 {
		return 0
	}
	n := v * 100
	eps := math.Pow(2, math.Log2(math.Abs(n))-50)
	return math.Round(n+math.Copysign(eps, n)) / 100
}

// halfUp is the exact decimal num/10^places rounded half away from zero to
// 2 decimals (big.Rat), as a float64.
func halfUp(num *big.Int, places int) float64 {
	r := new(big.Rat).SetFrac(num, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil))
	r.Mul(r, big.NewRat(100, 1))
	q := new(big.Int).Quo(new(big.Int).Add(new(big.Int).Mul(r.Num(), big.NewInt(2)), r.Denom()), new(big.Int).Mul(r.Denom(), big.NewInt(2)))
	f, _ := new(big.Rat).SetFrac(q, big.NewInt(100)).Float64()
	return f
}

// A counter in pounds for an order in kg (factor 0.45359237, 8 decimals)
// books the count times the factor rounded as Odoo rounds that decimal:
// 103,827 lb are 47095.13499999 kg, booked 47095.13. Round2 cut the
// float64 product (47095.134999990005) to 12 significant digits first,
// 47095.135, and booked 47095.14: 498 of the counts up to 3 million
// booked 0.01 high. Odoo's own float_round of the product agrees with the
// exact rounding all the way.
func TestRound2OfAFactorOfEightDecimals(t *testing.T) {
	const factor = 0.45359237
	n := 3_000_000
	if testing.Short() {
		n = 300_000
	}
	f := big.NewInt(45359237)
	var wrong, odooWrong int
	var first []int
	for c := 1; c <= n; c++ {
		// The exact product in units of 10^-8, rounded half up to 10^-2
		// (integers: exact); big.Rat below for a sample.
		e := c * 45359237
		want := float64((e+500_000)/1_000_000) / 100
		if c%9973 == 0 || c == 103827 {
			if r := halfUp(new(big.Int).Mul(big.NewInt(int64(c)), f), 8); r != want {
				t.Fatalf("%d lb: the references differ: %v (big.Rat) and %v", c, r, want)
			}
		}
		v := float64(c) * factor
		if got := Round2(v); got != want {
			if wrong++; len(first) < 5 {
				first = append(first, c)
				t.Errorf("%d lb: Round2(%v) = %v, want %v", c, v, got, want)
			}
		}
		if odooRound(v) != want {
			odooWrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d counts rounded off the exact decimal (first %v)", wrong, n, first)
	}
	if odooWrong > 0 {
		t.Errorf("Odoo's float_round of the product is off the exact decimal for %d counts: the reference is not Odoo's", odooWrong)
	}
}
