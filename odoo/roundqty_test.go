package odoo_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// The client's rounding (RoundQty: decimal.Round of the decimal a float64
// stands for) books what Odoo's float_round books — the emulator's
// FloatRound (18.0 on) and FloatRound17 — of the quantities the agent
// computes: ties whose float64 is a hair below or above, both signs,
// digits 0 to 4, the decimals of 14 significant digits either side of
// each tie, and counts times a factor of 8 decimals. What it books, Odoo
// stores as it is (float_round of a rounded quantity is that quantity),
// so the quantity read back is the one written, whoever rounds.
//
// They part on decimals of 15 significant digits a unit of the last digit
// below a tie, near the top of their decade (9755.49999999999 at 0
// digits): within 2^-50 of the tie, which 18.0's epsilon takes for it (17's,
// 2^-52, does not). decimal.Round rounds the decimal down, as it is below
// the tie; Odoo, given the agent's rounded quantity, keeps it.
func TestRoundQtyAgreesWithFloatRound(t *testing.T) {
	rounds := map[string]func(float64, int) float64{"FloatRound": odootest.FloatRound, "FloatRound17": odootest.FloatRound17}
	// text is q as the database's numeric column keeps it: float_repr's
	// text (FloatRound17's product is not always the float64 nearest its
	// decimal), without a sign for zero.
	text := func(q float64, d int) string { return strconv.FormatFloat(q+0, 'f', d, 64) }
	var checked, wrong, parted int
	check := func(what string, v float64, d int, fifteen bool) {
		t.Helper()
		checked++
		got := decimal.Round(v, d)
		g := text(got, d)
		for name, round := range rounds {
			want := round(v, d)
			if text(want, d) != g {
				// 18.0's epsilon past a 15-digit decimal below a tie:
				// Odoo one unit further from zero.
				if fifteen && name == "FloatRound" && strings.HasPrefix(what, "below") &&
					text(want, d) == text(decimal.Add(got, math.Copysign(math.Pow10(-d), v)), d) {
					parted++
				} else if wrong++; wrong <= 20 {
					t.Errorf("%s %v at %d digits: decimal.Round %v, %s %v", what, v, d, got, name, want)
				}
			}
			if again := round(got, d); text(again, d) != g {
				if wrong++; wrong <= 20 {
					t.Errorf("%s %v at %d digits: booked %v, which %s stores as %v", what, v, d, got, name, again)
				}
			}
		}
	}
	// parse is the float64 nearest to m·10^e.
	parse := func(m int64, e int) float64 {
		v, err := strconv.ParseFloat(fmt.Sprintf("%de%d", m, e), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r := rand.New(rand.NewPCG(1, 2))
	for d := range 5 {
		var ks []int64
		for k := range int64(2000) {
			ks = append(ks, k)
		}
		for mag := 3; mag <= 9; mag++ {
			for range 300 {
				ks = append(ks, r.Int64N(int64(math.Pow10(mag))))
			}
		}
		for _, k := range ks {
			tie := 10*k + 5 // the tie (k + 0.5)·10^-d as tie·10^-(d+1)
			digits := len(strconv.FormatInt(tie, 10))
			for _, sign := range []int64{1, -1} {
				check("tie", parse(sign*tie, -(d+1)), d, false)
				// The decimals of 14 and of 15 significant digits either
				// side of it.
				for _, width := range []int{14, 15} {
					if digits > width {
						continue
					}
					pad := int64(math.Pow10(width - digits))
					e := -(d + 1) - (width - digits)
					check("below a tie", parse(sign*(tie*pad-1), e), d, width == 15)
					check("above a tie", parse(sign*(tie*pad+1), e), d, width == 15)
				}
			}
		}
	}
	// A counter in pounds for an order in kg, as the agent multiplies.
	const factor = 0.45359237
	for c := 1; c <= 300_000; c++ {
		check("count × factor", decimal.Mul(float64(c), factor), 2, false)
	}
	if wrong > 0 {
		t.Errorf("%d disagreements in %d values", wrong, checked)
	}
	t.Logf("%d values; 18.0's float_round parts from decimal.Round on %d decimals of 15 digits just below a tie", checked, parted)
}
