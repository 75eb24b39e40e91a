package agent

import (
	"testing"
	"time"
)

// The least receipt-less-source-time difference of a machine's values is
// what they come late by: a source clock minutes behind is no lateness, a
// value the broker kept is; the estimate follows a clock set back within
// two windows, one set forward at once, and what is saved comes back at
// the next start.
func TestOffsetsMeasureHowLateValuesCame(t *testing.T) {
	var o offsets
	now := time.Now()
	if l := o.lag("m", 5000); l != 0 {
		t.Errorf("nothing known: lag %v, want 0", l)
	}
	behind := int64(3 * 60 * 1000) // the source's clock 3 minutes behind
	for i, jitter := range []int64{40, 12, 25} {
		o.note("m", behind+jitter, now.Add(time.Duration(i)*time.Second))
	}
	if l := o.lag("m", behind+30); l != 18*time.Millisecond {
		t.Errorf("a live value: lag %v, want 18ms", l)
	}
	if l := o.lag("m", behind+12+45000); l != 45*time.Second {
		t.Errorf("a value kept 45 s: lag %v, want 45s", l)
	}
	// A replay noted comes later than the estimate: it does not move it.
	o.note("m", behind+60000, now.Add(4*time.Second))
	if l := o.lag("m", behind+60000); l != time.Minute-12*time.Millisecond {
		t.Errorf("after a replay: lag %v", l)
	}
	// Set forward (the difference smaller): at once.
	o.note("m", 500, now.Add(5*time.Second))
	if l := o.lag("m", 500); l != 0 {
		t.Errorf("clock set forward: lag %v, want 0", l)
	}
	// Set back: the new difference is the least once the window before
	// the change is gone, two windows on.
	back := int64(10 * 60 * 1000)
	at := now.Add(5 * time.Second)
	for i := range 3 {
		at = at.Add(offsetWindow)
		o.note("m", back, at)
		if l := o.lag("m", back); (l == 0) != (i >= 1) {
			t.Errorf("clock set back, %d windows on: lag %v", i+1, l)
		}
	}
	// Saved once it moved a second from what was saved; restored as is.
	if !o.note("m", back-2000, at.Add(time.Second)) {
		t.Error("an estimate moved 2 s is not to be saved")
	}
	v := o.saved("m")
	if v == nil || *v != back-2000 {
		t.Fatalf("saved %v, want %d", v, back-2000)
	}
	if o.note("m", back-2500, at.Add(2*time.Second)) {
		t.Error("an estimate moved 0.5 s from the saved one is to be saved")
	}
	var next offsets
	next.restore("m", v)
	if l := next.lag("m", back-2000+30000); l != 30*time.Second {
		t.Errorf("restored: lag %v, want 30s", l)
	}
	if next.note("m", back-2000+30000, time.Now()) {
		t.Error("a replay after the restart moved the restored estimate")
	}
}
