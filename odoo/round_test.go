package odoo

import "testing"

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
