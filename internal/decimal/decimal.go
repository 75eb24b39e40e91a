// Package decimal does exact decimal arithmetic on quantities kept as float64.
//
// A counter's steps times its factor are decimals (3 steps of 0.45359237 kg
// are 1.36077711 kg), and Odoo rounds the decimal booked half up to 2
// places. float64 holds a decimal only as its nearest binary value, so sums
// of many steps drift (45,519 steps of 0.015 add up to 682.7849999995, not
// 682.785), and the rounding of that drift is off by 0.01. This package
// keeps every quantity the float64 nearest to the decimal it stands for:
// Add, Sub and Mul take their operands as decimals (Of), compute exactly
// in integers and return the float64 nearest to the exact result, so sums
// of millions of steps hold exactly what was counted, and Round rounds
// that decimal, not its binary value.
//
// The decimal a float64 stands for (Of) is the shortest one, of at most 15
// significant digits, within 1.5 ulps of it: every such decimal has a
// float64 of its own (15 digits is the most that float64 keeps apart), and
// the slack takes the float64 product of a step and its factor, an ulp
// off its decimal at times, for that decimal.
// Results with more than 15 significant digits are rounded to 15 (half to
// even): a total below 10 million keeps 8 decimals, below 10,000 11. A
// value with no such decimal — the float noise of sums stored by versions
// before this package — stands for its 12 significant digits (4 decimals
// from 100 million up), which is how those versions read it; Legacy reads
// a value they stored so.
package decimal

import (
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

// slack is how far from v, in ulps of v, Of looks for its decimal.
const slack = 1.5

// maxMant bounds the mantissa of a decimal of at most 15 significant
// digits, the most a result keeps: each such decimal has a float64 of its
// own.
const maxMant = 1_000_000_000_000_000 // 10^15

// maxExact is 2^53: every integer up to it is exact in a float64.
const maxExact = 1 << 53

// maxScale is the most decimals a result keeps: 10^22 is the largest
// power of ten exact in a float64.
const maxScale = 22

var pow10f = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

var pow10i = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// Of returns the decimal v stands for, m·10^-k (0 ≤ k ≤ 22, m without
// trailing zeros unless k is 0), and whether it has one: false for NaN,
// the infinities, and values whose decimal does not fit (beyond 2^63 in
// units of its last digit, or below 10^-22).
//
// An integral v up to 2^53 stands for itself. Else v stands for the
// shortest decimal of at most 15 significant digits within 1.5 units in
// the last place (ulp) of v, if there is one; else (float noise) for v to
// 12 significant digits, or to 4 decimals from 10^8 up.
//
// The slack takes a step's float64 product for its decimal: 103,827 ×
// 0.45359237 is 47095.13499999 exactly, and the float64 product
// 47095.134999990005, an ulp above that decimal's float64 (a third of the
// products of 3 million counts and that factor are not the nearest
// float64 of their decimal). It cannot take one decimal for another:
// decimals of 15 digits are at least 4.5 ulps apart.
func Of(v float64) (m int64, k int, ok bool) {
	if v == math.Trunc(v) && math.Abs(v) <= maxExact {
		return int64(v), 0, true
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, false
	}
	a := math.Abs(v)
	tol := slack * (math.Nextafter(a, math.Inf(1)) - a)
	for k := 0; k <= maxScale; k++ {
		x := a * pow10f[k]
		if x >= maxMant {
			break
		}
		r := math.Round(x)
		if d := r / pow10f[k]; d == a || math.Abs(d-a) <= tol {
			return sign(int64(r), v), k, true
		}
	}
	return noisy(v)
}

// at is Of(v) if v's decimal has at most k decimals (then as a multiple of
// 10^-k), and false if it has more or is not found at k: a decimal of at
// most 15 digits within 1.5 ulps of v at k is the one Of finds at its own,
// shorter, scale, since two of them are more than 3 ulps apart.
func at(v float64, k int) (int64, int, bool) {
	a := math.Abs(v)
	x := a * pow10f[k]
	if x >= maxMant || math.IsNaN(x) {
		return 0, 0, false
	}
	r := math.Round(x)
	if d := r / pow10f[k]; d != a && math.Abs(d-a) > slack*(math.Nextafter(a, math.Inf(1))-a) {
		return 0, 0, false
	}
	return sign(int64(r), v), k, true
}

// noisy is Of of a value with no decimal of at most 15 digits: its 12
// significant digits (4 decimals from 10^8 up), as versions before this
// package read every value.
func noisy(v float64) (m int64, k int, ok bool) {
	var buf [40]byte
	a := math.Abs(v)
	var s []byte
	if a >= 1e8 {
		s = strconv.AppendFloat(buf[:0], a, 'f', 4, 64)
	} else {
		s = strconv.AppendFloat(buf[:0], a, 'e', 11, 64)
	}
	var u uint64
	exp, frac, inFrac := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			inFrac = true
		case c >= '0' && c <= '9':
			if u > (math.MaxInt64-9)/10 {
				return 0, 0, false
			}
			u = u*10 + uint64(c-'0')
			if inFrac {
				frac++
			}
		case c == 'e':
			e, err := strconv.Atoi(string(s[i+1:]))
			if err != nil {
				return 0, 0, false
			}
			exp = e
			i = len(s)
		}
	}
	k = frac - exp
	for k > 0 && u%10 == 0 {
		u /= 10
		k--
	}
	for k < 0 {
		if u > math.MaxInt64/10 {
			return 0, 0, false
		}
		u *= 10
		k++
	}
	if k > maxScale || u > math.MaxInt64 {
		return 0, 0, false
	}
	return sign(int64(u), v), k, true
}

func sign(m int64, v float64) int64 {
	if v < 0 {
		return -m
	}
	return m
}

// Float is the float64 nearest to m·10^-k (k ≤ 22), that decimal first
// rounded to 15 significant digits (half to even) if it has more.
func Float(m int64, k int) float64 {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = -u
	}
	for k > 0 && u%10 == 0 {
		u /= 10
		k--
	}
	if u >= maxMant && k > 0 {
		// More than 15 digits: cut to 15, half to even, as far as the
		// decimals go (an integer keeps all of its digits).
		d := 0
		for d < k && u/pow10i[d] >= maxMant {
			d++
		}
		p := pow10i[d]
		q, r := u/p, u%p
		if h := p / 2; r > h || r == h && q%2 == 1 {
			q++
		}
		u, k = q, k-d
		for k > 0 && u%10 == 0 {
			u /= 10
			k--
		}
	}
	// u below 2^53 (it has at most 15 digits, or k is 0) and 10^k are
	// exact: one rounding, to nearest. (An integer beyond 2^53 is rounded
	// to a float64 first.)
	f := float64(u) / pow10f[k]
	if neg {
		return -f
	}
	return f
}

// align brings two decimals to the larger scale, reporting false if a
// mantissa overflows.
func align(ma int64, ka int, mb int64, kb int) (int64, int64, int, bool) {
	for ka < kb {
		if ma > math.MaxInt64/10 || ma < math.MinInt64/10 {
			return 0, 0, 0, false
		}
		ma *= 10
		ka++
	}
	for kb < ka {
		if mb > math.MaxInt64/10 || mb < math.MinInt64/10 {
			return 0, 0, 0, false
		}
		mb *= 10
		kb++
	}
	return ma, mb, ka, true
}

// Add is the float64 nearest to the sum of the decimals a and b stand for
// (see Of), rounded to 15 significant digits if it has more; a+b where a
// decimal does not fit.
func Add(a, b float64) float64 {
	if a == math.Trunc(a) && b == math.Trunc(b) && math.Abs(a) <= maxExact/2 && math.Abs(b) <= maxExact/2 {
		return a + b // integers: exact
	}
	mb, kb, ok := Of(b)
	if !ok {
		return a + b
	}
	ma, ka, ok := at(a, kb) // a running sum is mostly of its steps' scale
	if !ok {
		if ma, ka, ok = Of(a); !ok {
			return a + b
		}
	}
	ma, mb, k, ok := align(ma, ka, mb, kb)
	if !ok {
		return a + b
	}
	s := ma + mb
	if (s > ma) != (mb > 0) { // overflow
		return a + b
	}
	return Float(s, k)
}

// Sub is Add(a, -b).
func Sub(a, b float64) float64 { return Add(a, -b) }

// Mul is the float64 nearest to the product of the decimals a and b stand
// for (see Of), rounded to 15 significant digits if it has more; a*b where
// a decimal, or the product, does not fit.
func Mul(a, b float64) float64 {
	if b == 1 {
		return a
	}
	ma, ka, ok := Of(a)
	if !ok {
		return a * b
	}
	mb, kb, ok := Of(b)
	if !ok || ka+kb > maxScale {
		return a * b
	}
	ua, ub := abs(ma), abs(mb)
	hi, lo := bits.Mul64(ua, ub)
	if hi != 0 || lo > math.MaxInt64 {
		return a * b
	}
	p := int64(lo)
	if (ma < 0) != (mb < 0) {
		p = -p
	}
	return Float(p, ka+kb)
}

func abs(m int64) uint64 {
	if m < 0 {
		return uint64(-m)
	}
	return uint64(m)
}

// Round rounds the decimal v stands for (see Of) to places decimals (0 to
// 22), half away from zero — Odoo's float_round (HALF-UP) of that decimal —
// and returns the nearest float64. A value with no decimal that fits (a
// NaN, an infinity, one beyond 2^63 units of its last digit) is rounded as
// a float64.
func Round(v float64, places int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	m, k, ok := Of(v)
	if !ok {
		p := math.Pow10(places)
		if r := math.Round(v*p) / p; r != 0 {
			return r
		}
		return 0
	}
	if k <= places {
		return Float(m, k)
	}
	u := abs(m)
	d := k - places
	if d >= len(pow10i) {
		return 0 // below half a unit of the last place
	}
	p := pow10i[d]
	q := u / p
	if u%p >= p/2 { // p is even: p/2 is exactly half
		q++
	}
	if q == 0 {
		return 0 // not -0
	}
	r := Float(int64(q), places)
	if m < 0 {
		return -r
	}
	return r
}

// Legacy is the float64 of the decimal versions before this package read v
// as, for a value they stored: v to 12 significant digits (4 decimals from
// 10^8 up), an integer up to 2^53 as it is. Their sums carry float noise
// that can fall within an ulp of another decimal of 15 digits (297 steps of
// 0.005 added up to 1.4849999999999903, an ulp from 1.48499999999999),
// which Of would take; they took it for 1.485, and so does Legacy.
func Legacy(v float64) float64 {
	if v == math.Trunc(v) && math.Abs(v) <= maxExact {
		return v
	}
	m, k, ok := noisy(v)
	if !ok {
		return v
	}
	return Float(m, k)
}

// RoundStep rounds the decimal v stands for (see Of) to a multiple of the
// decimal step stands for, half away from zero — Odoo's float_round(v,
// precision_rounding=step) (HALF-UP) of those decimals, as it rounds a
// quantity to its unit's rounding — and returns the nearest float64: 0.125
// at a step of 0.01 is 0.13, 0.4 at 1 is 0, 1.6 at 1 is 2, 0.7 at 0.25 is
// 0.75. A step of 0 or below, or either without a decimal (Of), leaves v
// as it is.
func RoundStep(v, step float64) float64 {
	if v == 0 || step <= 0 {
		return v
	}
	m, k, ok := Of(v)
	ms, ks, oks := Of(step)
	if !ok || !oks || ms <= 0 {
		return v
	}
	// v/step = (m·10^K-k) / (ms·10^K-ks), K the larger scale.
	K := max(k, ks)
	num := new(big.Int).Mul(big.NewInt(m), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(K-k)), nil))
	den := new(big.Int).Mul(big.NewInt(ms), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(K-ks)), nil))
	neg := num.Sign() < 0
	num.Abs(num)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Lsh(r, 1).Cmp(den) >= 0 { // half or more: away from zero
		q.Add(q, big.NewInt(1))
	}
	if q.Sign() == 0 {
		return 0 // not -0
	}
	// q·step = q·ms·10^-ks
	p := new(big.Int).Mul(q, big.NewInt(ms))
	if !p.IsInt64() {
		return math.Round(v/step) * step
	}
	res := Float(p.Int64(), ks)
	if neg {
		return -res
	}
	return res
}
