package connectors

import (
	"testing"
	"time"
)

// Each wait lies in [0, ceiling] and is spread over the whole range (full
// jitter); the ceiling doubles from min up to the cap.
func TestBackoffFullJitterCapped(t *testing.T) {
	base, max := 100*time.Millisecond, 3*time.Second
	for attempt := 0; attempt < 12; attempt++ {
		ceil := min(max, base<<attempt)
		var hi, lo bool
		for range 2000 {
			b := NewBackoff(base, max)
			for range attempt {
				b.NextBackOff()
			}
			d := b.NextBackOff()
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %s outside [0, %s]", attempt, d, ceil)
			}
			hi = hi || d > ceil*3/4
			lo = lo || d < ceil/4
		}
		if !hi || !lo {
			t.Fatalf("attempt %d: waits not spread over [0, %s] (full jitter)", attempt, ceil)
		}
	}
}

// Reset (after a success) starts the schedule again at min.
func TestBackoffReset(t *testing.T) {
	base, max := 100*time.Millisecond, 3*time.Second
	for range 200 {
		b := NewBackoff(base, max)
		for range 10 {
			b.NextBackOff()
		}
		b.Reset()
		if d := b.NextBackOff(); d > base {
			t.Fatalf("first wait after Reset %s > %s", d, base)
		}
	}
}

// A reload that lowers the cap holds from the next wait on; one that
// raises it lets the ceiling grow past the old cap.
func TestBackoffSetMax(t *testing.T) {
	b := NewBackoff(time.Second, time.Minute)
	for range 10 {
		b.NextBackOff() // the ceiling at the cap of a minute
	}
	b.SetMax(2 * time.Second)
	for i := range 50 {
		if d := b.NextBackOff(); d > 2*time.Second {
			t.Fatalf("wait %d after the cap was lowered to 2s: %v", i, d)
		}
	}
	b.SetMax(time.Hour)
	var most time.Duration
	for range 200 {
		most = max(most, b.NextBackOff())
	}
	if most <= time.Minute {
		t.Errorf("longest of 200 waits %v after the cap was raised to an hour, want some above the old minute", most)
	}
}
