package agent

import (
	"log/slog"
	"testing"
	"time"
)

// The answer-time average: slow from 2 s, and after a quiet minute it
// starts again from the next answer instead of taking minutes to fall.
func TestCallTimeAverage(t *testing.T) {
	f := &forwarder{a: &Agent{log: slog.New(slog.DiscardHandler)}}
	f.noteCallTime(3*time.Second, false)
	if !f.link.Slow || f.link.CallSeconds != 3 {
		t.Fatalf("after a 3 s answer: %+v", f.link)
	}
	f.noteCallTime(10*time.Millisecond, false)
	if !f.link.Slow {
		t.Fatalf("one fast answer in a run of slow ones cleared slow: %+v", f.link)
	}
	f.noteCallTime(10*time.Millisecond, true)
	if f.link.Slow || f.link.CallSeconds != 0.01 {
		t.Fatalf("the first answer after a quiet minute: %+v", f.link)
	}
}
