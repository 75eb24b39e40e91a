package connectors

import "time"

// Seen is when this box received a value by its boot clock: the time since
// the box booted (CLOCK_MONOTONIC: suspended time aside, which an edge box
// does not know), which neither NTP nor a technician's `date` steps, with
// the boot it counts from. Two receipts in one boot are
// Up apart however the wall clock moved between them: a box without a
// real-time clock boots with its clock behind (by as long as it was off)
// and is set once NTP is reached, a step of hours or days. The zero Seen is
// not known (another OS; a state kept by a version that kept none).
type Seen struct {
	Boot string        `json:"boot,omitempty"` // the kernel's boot id
	Up   time.Duration `json:"up,omitempty"`
}

// Since reports how long after earlier s was received, by the boot clock;
// ok only when both are known and of one boot.
func (s Seen) Since(earlier Seen) (d time.Duration, ok bool) {
	if s.Boot == "" || s.Boot != earlier.Boot || s.Up <= 0 || earlier.Up <= 0 || s.Up < earlier.Up {
		return 0, false
	}
	return s.Up - earlier.Up, true
}

// Receipt is when a value was received, by the wall clock and by the boot
// clock read together: a connector that hands on several values of one
// read takes it once, before it may block handing them on (a boot-clock
// reading taken after a wait would look like a step of the wall clock).
type Receipt struct {
	Time time.Time
	Seen Seen
}

// Receive is the receipt of a value received now.
func Receive() Receipt { return Receipt{Time: time.Now(), Seen: SeenNow()} }

// SeenNow is the boot clock now (the zero Seen where it cannot be read).
func SeenNow() Seen {
	if bootID == "" {
		return Seen{}
	}
	up, ok := bootClock()
	if !ok {
		return Seen{}
	}
	return Seen{Boot: bootID, Up: up}
}
