package agent

import (
	"strings"
	"testing"
	"time"
)

// The least receipt-less-source-time difference of a machine's values is
// what they come late by: a value the broker kept is late, a source clock
// off by more than the clock slack makes none late (its times could not
// cut by order), a clock set back is followed at once (its next value is
// stamped before the last), one set forward at once, a slow drift back
// within two windows, and what is saved comes back at the next start.
func TestOffsetsMeasureHowLateValuesCame(t *testing.T) {
	var o offsets
	now := time.Now()
	src := now.UnixMilli() // the source's clock, in step with the box's
	lag := func(off int64) time.Duration { return o.lag("m", off) }
	if l := lag(5000); l != 0 {
		t.Errorf("nothing known: lag %v, want 0", l)
	}
	for i, jitter := range []int64{40, 12, 25} {
		o.note("m", src+int64(i)*1000, jitter, now.Add(time.Duration(i)*time.Second))
	}
	if l := lag(30); l != 18*time.Millisecond {
		t.Errorf("a live value: lag %v, want 18ms", l)
	}
	if l := lag(12 + 45000); l != 45*time.Second {
		t.Errorf("a value kept 45 s: lag %v, want 45s", l)
	}
	// A replay, stamped on from the last value noted, does not move it.
	o.note("m", src+2500, 60000, now.Add(4*time.Second))
	if l := lag(60000); l != time.Minute-12*time.Millisecond {
		t.Errorf("after a replay: lag %v", l)
	}
	// Set back 3 minutes: the next value is stamped before the last one;
	// it and the values after it are live at once.
	back := int64(3 * 60 * 1000)
	o.note("m", src+5000-back, back+20, now.Add(5*time.Second))
	if l := lag(back + 30); l != 0 {
		// (the clock is now off by more than the slack: no lag at all)
		t.Errorf("clock set back: lag %v, want 0", l)
	}
	// Set forward again (the difference smaller): at once.
	o.note("m", src+6000, 15, now.Add(6*time.Second))
	if l := lag(25); l != 10*time.Millisecond {
		t.Errorf("clock set forward: lag %v, want 10ms", l)
	}
	// A slow drift back (values stamped on, each later than the last, the
	// difference 30 s more): followed within two windows.
	at, s := now.Add(6*time.Second), src+6000
	for i := range 3 {
		at, s = at.Add(offsetWindow), s+offsetWindow.Milliseconds()-30000
		o.note("m", s, 30015, at)
		if l := lag(30015); (l == 0) != (i >= 1) {
			t.Errorf("clock drifted back 30 s, %d windows on: lag %v", i+1, l)
		}
	}
	// A clock 3 minutes behind all along: no lag, however late.
	var skewed offsets
	skewed.note("m", src, back+10, now)
	if l := skewed.lag("m", back+10+45000); l != 0 {
		t.Errorf("a clock 3 min behind: lag %v, want 0", l)
	}
	// Saved once it moved a second from what was saved; restored as is.
	if save, _ := o.note("m", s+1000, 28000, at.Add(time.Second)); !save {
		t.Error("an estimate moved 2 s is not to be saved")
	}
	v, last := o.saved("m")
	if v == nil || *v != 28000 || last != s+1000 {
		t.Fatalf("saved %v, last stamped %d; want 28000, %d", v, last, s+1000)
	}
	if save, _ := o.note("m", s+2000, 27500, at.Add(2*time.Second)); save {
		t.Error("an estimate moved 0.5 s from the saved one is to be saved")
	}
	var next offsets
	next.restore("m", v, last)
	if l := next.lag("m", 28000+30000); l != 30*time.Second {
		t.Errorf("restored: lag %v, want 30s", l)
	}
	if save, _ := next.note("m", s+3000, 28000+30000, time.Now()); save {
		t.Error("a replay after the restart moved the restored estimate")
	}
	// The clock set back 20 s while the agent was stopped: the first value
	// after the start, stamped before the last one saved, shows it.
	var after offsets
	after.restore("m", v, last)
	after.note("m", last-19000, 28000+20000, time.Now())
	if l := after.lag("m", 28000+20000+20); l != 20*time.Millisecond {
		t.Errorf("clock set back while stopped: lag %v, want 20ms", l)
	}
}

// The clock offset status shows is of values noted in this run, over two
// whole windows: an estimate restored at a start (a PLC 5 hours ahead,
// its clock set right while the agent was stopped) is not shown, nor one
// of a machine whose timestamp_field a reload may have removed, until it
// is measured again — the reviews.
func TestClockOffIsOfThisRunsValues(t *testing.T) {
	o := offsets{window: 50 * time.Millisecond}
	ahead := -(5 * time.Hour).Milliseconds()
	o.restore("m", &ahead, 0)
	now := time.Now()
	for i := range 3 {
		if d, ok := clockOffOf(&o, "m"); ok {
			t.Fatalf("after %d windows: %v shown, want nothing yet", i, d)
		}
		o.note("m", now.UnixMilli(), 3, now)
		now = now.Add(60 * time.Millisecond)
	}
	if d, ok := clockOffOf(&o, "m"); !ok || d != -3*time.Millisecond {
		t.Fatalf("after two windows of this run's values: %v, %v; want -3ms (latency)", d, ok)
	}
	// A reload (which may have removed its timestamp_field) hides it until
	// two more windows of values come; the estimate stays.
	o.unshow()
	if d, ok := clockOffOf(&o, "m"); ok {
		t.Errorf("after a reload: %v shown", d)
	}
	for range 3 {
		o.note("m", now.UnixMilli(), 3, now)
		now = now.Add(60 * time.Millisecond)
	}
	if d, ok := clockOffOf(&o, "m"); !ok || d != -3*time.Millisecond {
		t.Errorf("two windows after the reload: %v, %v; want -3ms", d, ok)
	}
}

// A machine whose values carry the times of two clocks hours apart — its
// counters from a gateway on time, its run state from a PLC on New York
// time sent as UTC — is never measured (each value of the clock behind
// after one of the other is a step back), and is told as two clocks (the
// review: nothing was shown); one clock set back once is not.
func TestTwoClocksOnOneMachineAreTold(t *testing.T) {
	var o offsets
	now := time.Now()
	behind := (5 * time.Hour).Milliseconds()
	var last sourceClock // what the log is told of "m" at its last value
	for i := range 10 {
		at := now.Add(time.Duration(i) * time.Second)
		o.note("m", at.UnixMilli(), 3, at)                                                   // the gateway, on time
		_, last = o.note("m", at.UnixMilli()-behind, behind+3, at)                           // the PLC
		o.note("one", at.UnixMilli()-behind*int64(min(i, 1)), 3+behind*int64(min(i, 1)), at) // set back once
	}
	if d, ok := clockSplitOf(&o, "m"); !ok || d.Round(time.Minute) != 5*time.Hour {
		t.Errorf("two clocks: %v, %v; want 5h", d, ok)
	}
	if _, ok := clockOffOf(&o, "m"); ok {
		t.Error("two clocks measured as one")
	}
	if msg, attr, d := last.warning(); !strings.Contains(msg, "two clocks") || attr != "apart" || d.Round(time.Minute) != 5*time.Hour {
		t.Errorf("the log at the last value: %q, %s=%v", msg, attr, d)
	}
	if d, ok := clockSplitOf(&o, "one"); ok {
		t.Errorf("a clock set back once told as two clocks %v apart", d)
	}
	if !strings.Contains(clockSplitNote(5*time.Hour), "two clocks, one 5h0m0s behind the other") {
		t.Error(clockSplitNote(5 * time.Hour))
	}
}

func clockOffOf(o *offsets, machine string) (time.Duration, bool) {
	c := o.clock(machine)
	return c.off, c.offOK
}

func clockSplitOf(o *offsets, machine string) (time.Duration, bool) {
	c := o.clock(machine)
	return c.split, c.splitOK
}
