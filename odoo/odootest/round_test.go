package odootest_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// FloatRound and FloatRound17 pass the check float_utils.py runs as a
// script (its __main__): n + a fraction, for n from 0 to 9,991 in steps
// of 97 times 10^0 to 10^6, both signs, rounded and printed with "%.*f" —
// 0.015 at 2 digits is 0.02, 0.675 is 0.68, 0.4555 is 0.46 at 2 and 0.456
// at 3, 0.45555 is 0.4556 at 4, and each of them a hair below the tie
// (0.01499, 0.67499) rounds down. math.Round(v*10^d)/10^d, the emulator's
// rounding before, fails it (counted, as a check of the check).
func TestFloatRoundPassesOdoosOwnCheck(t *testing.T) {
	fractions := []float64{0, .015, .01499, .675, .67499, .4555, .4555, .45555}
	expecteds := []string{".00", ".02", ".01", ".68", ".67", ".46", ".456", ".4556"}
	precisions := []int{2, 2, 2, 2, 2, 2, 3, 4}
	naive := func(v float64, d int) float64 { p := math.Pow10(d); return math.Round(v*p) / p }
	var calls, naiveWrong int
	for magnitude := range 7 {
		for i, frac := range fractions {
			prec := precisions[i]
			for _, sign := range []float64{-1, 1} {
				for x := 0; x < 10000; x += 97 {
					n := x * int(math.Pow10(magnitude))
					f := sign * (float64(n) + frac)
					want := strconv.Itoa(n) + expecteds[i]
					if f != 0 && sign == -1 {
						want = "-" + want
					}
					calls++
					for name, round := range map[string]func(float64, int) float64{"FloatRound": odootest.FloatRound, "FloatRound17": odootest.FloatRound17} {
						if got := strconv.FormatFloat(round(f, prec), 'f', prec, 64); got != want {
							t.Errorf("%s(%v, %d) = %s, want %s", name, f, prec, got, want)
						}
					}
					if strconv.FormatFloat(naive(f, prec), 'f', prec, 64) != want {
						naiveWrong++
					}
				}
			}
		}
	}
	if naiveWrong == 0 {
		t.Errorf("math.Round(v*10^d)/10^d passes all %d: the check tells nothing", calls)
	}
	t.Logf("%d values; math.Round(v*10^d)/10^d rounds %d of them otherwise", calls, naiveWrong)
}

// Where math.Round(v*100)/100 and float_round part: ties whose float64 is
// a hair below, negative ones alike (HALF-UP is away from zero). Compared
// as printed to the digits, as Odoo's own check does: FloatRound17's
// product is not always the float64 nearest the decimal.
func TestFloatRoundTies(t *testing.T) {
	for _, tc := range []struct {
		v      float64
		digits int
		want   float64
	}{
		{2.675, 2, 2.68}, {-2.675, 2, -2.68}, {1.005, 2, 1.01}, {-1.005, 2, -1.01},
		{1.015, 2, 1.02}, {0.285, 2, 0.29}, {-0.285, 2, -0.29}, {1.0005, 3, 1.001},
		{2.5, 0, 3}, {-2.5, 0, -3}, {0.5, 0, 1}, {2.4999, 0, 2}, {0.004, 2, 0}, {1234.5678, 4, 1234.5678},
	} {
		for name, round := range map[string]func(float64, int) float64{"FloatRound": odootest.FloatRound, "FloatRound17": odootest.FloatRound17} {
			got := round(tc.v, tc.digits)
			if g, w := strconv.FormatFloat(got, 'f', tc.digits, 64), strconv.FormatFloat(tc.want, 'f', tc.digits, 64); g != w {
				t.Errorf("%s(%v, %d) = %v, want %v", name, tc.v, tc.digits, got, tc.want)
			}
		}
	}
}
