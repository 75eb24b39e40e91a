package mapping

import (
	"strconv"
	"testing"
	"time"
)

// The counter rules' boundaries, each on both sides: a mutation audit
// moved each of them by one (<= to <, >= to >) and no test noticed.

// A rollover needs the decrease to exceed half the range: a 3-digit
// counter read again after two minutes (no rate learned yet) going from
// 750 to 250 (down by exactly half) is a reset, 250 pieces; from 751 to
// 250 a wrap, 499.
func TestWrapNeedsMoreThanHalfTheRange(t *testing.T) {
	for _, c := range []struct {
		from int
		want float64
	}{
		{750, 250}, // down by exactly half: a reset
		{751, 499}, // down by more: a wrap
	} {
		t.Run(strconv.Itoa(c.from), func(t *testing.T) {
			feed, counted := feedCounter(t, 1000)
			feed(strconv.Itoa(c.from), 0)
			feed("250", 2*time.Minute)
			if *counted != c.want {
				t.Errorf("%d then 250: counted %v, want %v", c.from, *counted, c.want)
			}
		})
	}
}

// A decrease to within a tenth of the last value, soon after it, is a
// step back (nothing counted, counting goes on above the last value): at
// exactly 90 % too; below it a reset.
func TestStepBackAtExactlyATenthBelow(t *testing.T) {
	for _, c := range []struct {
		back int
		want float64
	}{
		{900, 40 + 10},        // exactly 90 % of 1000: a step back, then 10 above 1000
		{899, 40 + 899 + 111}, // below: a reset, then 1010 - 899
	} {
		t.Run(strconv.Itoa(c.back), func(t *testing.T) {
			feed, counted := feed16(t)
			send := tenSecondsApart(feed)
			for v := 960; v <= 1000; v += 10 { // 1 piece/s, a reading every 10 s
				send(v)
			}
			send(c.back)
			send(1010)
			if *counted != c.want {
				t.Errorf("1000, %d, 1010: counted %v, want %v", c.back, *counted, c.want)
			}
		})
	}
}

// A wrap is plausible up to what the counter makes at wrapRateSlack times
// its usual rate in the time since its last reading, plus one: at 2
// pieces/s read every 10 s that is 4*2*10+1 = 81 pieces. A wrap of exactly
// 81 counts 81; one of 82 is a reset.
func TestWrapAtTheRateBound(t *testing.T) {
	for _, c := range []struct {
		after int
		want  float64
	}{
		{45, 100 + 81}, // 65536-65500+45 = 81: a wrap
		{46, 100 + 46}, // 82: more than the rate allows, a reset
	} {
		t.Run(strconv.Itoa(c.after), func(t *testing.T) {
			feed, counted := feed16(t)
			send := tenSecondsApart(feed)
			for v := 65400; v <= 65500; v += 20 { // 2 pieces/s
				send(v)
			}
			send(c.after)
			if *counted != c.want {
				t.Errorf("65500 then %d: counted %v, want %v", c.after, *counted, c.want)
			}
		})
	}
}

// tenSecondsApart feeds values read every 10 s, the first at 0.
func tenSecondsApart(feed func(v string, at time.Duration) []Event) func(v int) {
	sec := 0
	return func(v int) {
		feed(strconv.Itoa(v), time.Duration(sec)*time.Second)
		sec += 10
	}
}
