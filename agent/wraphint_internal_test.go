package agent

import "testing"

// A counter without rollover that "resets" from just below a counter
// width to just above 0 wrapped: the reset's log line says which rollover
// to set (mapping46: an MQTT counter, whose type validate cannot see, went
// 65533 -> 4 and was logged only as "counter reset", its 6 pieces lost).
func TestWrapHint(t *testing.T) {
	for _, tc := range []struct {
		from, raw float64
		want      string
	}{
		{65533, 4, "from 65533 to 4 looks like a 16-bit counter wrapping: set rollover: 65536 under this counter, or its wraps lose the pieces made across them"},
		{32767, 2, "from 32767 to 2 looks like a counter wrapping at 32768: set rollover: 32768 under this counter, or its wraps lose the pieces made across them"},
		{9998, 3, "from 9998 to 3 looks like a counter wrapping at 10000: set rollover: 10000 under this counter, or its wraps lose the pieces made across them"},
		{255, 1, "from 255 to 1 looks like an 8-bit counter wrapping: set rollover: 256 under this counter, or its wraps lose the pieces made across them"},
		{4294967290, 10, "from 4294967290 to 10 looks like a 32-bit counter wrapping: set rollover: 4294967296 under this counter, or its wraps lose the pieces made across them"},
		{1200, 0, ""},    // a shift's reset to 0
		{60000, 4, ""},   // a reset well below the top
		{65533, 900, ""}, // far above 0 after: no wrap at this pace
	} {
		if got := wrapHint(tc.from, tc.raw); got != tc.want {
			t.Errorf("wrapHint(%v, %v) = %q, want %q", tc.from, tc.raw, got, tc.want)
		}
	}
}
