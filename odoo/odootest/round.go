package odootest

import (
	"math"
	"strconv"
)

// FloatRound is Odoo's float_round(v, precision_digits=digits) with its
// default rounding method, HALF-UP, as odoo/tools/float_utils.py has it
// from 18.0 on (saas~17.4): v times 10^digits, plus an epsilon of 2^-50 of
// that away from zero, rounded half away from zero, divided by 10^digits.
// The epsilon tips a value a few ulps short of a tie over it — 1.005 is
// the float64 1.00499999999999989…, times 100 100.49999999999999, which
// rounds to 1.01 here and to 1 by math.Round(v*100)/100 — and too small
// to tip a decimal of 14 significant digits just below one (some of 15,
// near the top of their decade, it tips: TestRoundQtyAgreesWithFloatRound
// in package odoo).
func FloatRound(v float64, digits int) float64 {
	if v == 0 {
		return 0
	}
	// float_invert(10 ** -digits) is 10^digits exactly; 10 ** -0 is 1.
	p := math.Pow10(digits)
	n := v * p
	eps := math.Pow(2, math.Log2(math.Abs(n))-50)
	return math.Round(n+math.Copysign(eps, n)) / p
}

// FloatRound17 is float_round as Odoo 17.0 has it: v divided by 10^-digits,
// plus an epsilon of 2^-52 of that (math.log(x, 2): the natural logarithms'
// quotient), rounded half away from zero, times 10^-digits. It rounds as
// FloatRound does but within a few ulps of a tie; its product is not
// always the float64 nearest the decimal (1.0005 at 3 digits is
// 1.0010000000000001), the decimal is what the database's numeric column
// keeps (roundQty).
func FloatRound17(v float64, digits int) float64 {
	if v == 0 {
		return 0
	}
	f := math.Pow10(-digits)
	n := v / f
	eps := math.Pow(2, math.Log(math.Abs(n))/math.Log(2)-52)
	return math.Round(n+math.Copysign(eps, n)) * f
}

// roundQty is the quantity the database keeps of v, and a later read
// returns, at its precision (SetQtyDigits; under mu): the emulated
// version's float_round (HALF-UP) as the ORM rounds a write, in the
// numeric column as float_repr prints it (fields.py Float.convert_to_column).
func (s *Server) roundQty(v float64) float64 {
	r := FloatRound(v, s.qtyDigits)
	if s.v() < 18 {
		r = FloatRound17(v, s.qtyDigits)
	}
	kept, err := strconv.ParseFloat(strconv.FormatFloat(r, 'f', s.qtyDigits, 64), 64)
	if err != nil {
		return r
	}
	if kept == 0 {
		return 0 // PostgreSQL's numeric has no -0 (float_round gives -0.0 for -0.004)
	}
	return kept
}

// FloatRoundStep is Odoo's float_round(v, precision_rounding=step), HALF-UP,
// as the emulated version v has it: v divided by step, plus the epsilon
// of FloatRound (18.0 on) or FloatRound17 (17.0), rounded half away from
// zero, times step — a multiple of a unit's rounding (uom.uom.rounding)
// as the ORM computes it. 0.125 at a step of 0.01 is 0.13, 0.4 at 1.0 is 0.
func FloatRoundStep(v, step float64, version int) float64 {
	if v == 0 || step <= 0 {
		return v
	}
	n := v / step
	exp := -50.0
	if version < 18 {
		exp = -52
	}
	eps := math.Pow(2, math.Log2(math.Abs(n))+exp)
	return math.Round(n+math.Copysign(eps, n)) * step
}
