package agent

import (
	"testing"
	"time"
)

// Rebirth requests per edge node: at most one per rebirthMin; asked again,
// the wait doubles up to rebirthMax, also after a BIRTH; only a quiet
// spell starts over. Nodes are apart.
func TestRebirthDebounce(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	r := &rebirths{now: func() time.Time { return now }}
	a, b := rebirthKey("broker", "plant", "edge1"), rebirthKey("broker", "plant", "edge2")
	step := func(d time.Duration, key string, want bool) {
		t.Helper()
		now = now.Add(d)
		if got := r.allow(key); got != want {
			t.Fatalf("at +%s %s: allow %v, want %v", d, key, got, want)
		}
	}
	step(0, a, true)
	for range 100 { // a burst of DATA by alias: one request
		step(0, a, false)
	}
	step(0, b, true) // another node is asked on its own
	step(rebirthMin-time.Second, a, false)
	step(time.Second, a, true) // 30 s: no BIRTH came, asked again
	step(rebirthMin, a, false) // now it waits 60 s
	step(rebirthMin, a, true)
	if at, asked, _ := r.last(a); asked != 3 || !at.Equal(now) {
		t.Fatalf("last %s, %d asked", at, asked)
	}
	for wait := 4 * rebirthMin; wait <= rebirthMax; wait *= 2 {
		step(wait-time.Second, a, false)
		step(time.Second, a, true)
	}
	step(rebirthMax-time.Second, a, false) // capped
	step(time.Second, a, true)
	// It answered, and the need is back at once (its BIRTH did not cure
	// it): the wait stands (the review: a BIRTH started over, and such a
	// node was asked at every DATA).
	r.birth(a)
	if _, asked, _ := r.last(a); asked != 0 {
		t.Fatalf("%d asked after a BIRTH, want the count started over", asked)
	}
	step(0, a, false)
	step(rebirthMax-time.Second, a, false)
	step(time.Second, a, true)
	// Quiet for rebirthQuiet after the wait: starts over at rebirthMin.
	step(rebirthMax+rebirthQuiet, a, true)
	step(rebirthMin-time.Second, a, false)
	step(time.Second, a, true)
	// A request that could not be sent is no request.
	step(2*rebirthMin, a, true)
	r.unsent(a)
	step(0, a, true)
	if _, asked, _ := r.last(a); asked != 4 {
		t.Fatalf("%d asked, want 4 (the unsent one not counted)", asked)
	}
}
