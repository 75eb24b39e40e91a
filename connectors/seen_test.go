package connectors

import (
	"testing"
	"time"
)

func TestSeenSince(t *testing.T) {
	a := Seen{Boot: "b1", Up: time.Minute}
	for _, tc := range []struct {
		name   string
		s      Seen
		want   time.Duration
		wantOK bool
	}{
		{"later in the boot", Seen{Boot: "b1", Up: 2 * time.Minute}, time.Minute, true},
		{"the same moment", a, 0, true},
		{"another boot", Seen{Boot: "b2", Up: 2 * time.Minute}, 0, false},
		{"earlier", Seen{Boot: "b1", Up: time.Second}, 0, false},
		{"not known", Seen{}, 0, false},
	} {
		if d, ok := tc.s.Since(a); d != tc.want || ok != tc.wantOK {
			t.Errorf("%s: Since = %v, %v; want %v, %v", tc.name, d, ok, tc.want, tc.wantOK)
		}
	}
	if _, ok := a.Since(Seen{}); ok {
		t.Error("Since a Seen not known")
	}
}

// The boot clock read off Go's monotonic clock runs with it, in one boot.
func TestSeenNow(t *testing.T) {
	before := time.Now()
	s1 := SeenNow()
	if s1.Boot == "" {
		t.Skip("no boot clock on this system")
	}
	time.Sleep(20 * time.Millisecond)
	s2 := SeenNow()
	// At most what Go's clock saw around both reads (a fixed bound, 1 s,
	// is a bet on the machine's load).
	around := time.Since(before)
	if d, ok := s2.Since(s1); !ok || d < 20*time.Millisecond || d > around {
		t.Errorf("20 ms later: %v, %v (%v around both reads)", d, ok, around)
	}
	if r := Receive(); r.Seen.Boot != s1.Boot || r.Time.IsZero() {
		t.Errorf("Receive = %+v", r)
	}
}
