package agent

import "time"

// SetBookedCheck sets how many of the last bookings kept the agent looks up
// after Odoo was away, and how often it looks anyway (0: as it is), and
// returns what puts them back.
func SetBookedCheck(n int, every time.Duration) (restore func()) {
	wasN, wasEvery := bookedCheck, bookedCheckEvery
	bookedCheck = n
	if every > 0 {
		bookedCheckEvery = every
	}
	return func() { bookedCheck, bookedCheckEvery = wasN, wasEvery }
}

// SetClock stands in for this box's clocks; call it before Run. shift
// moves every receive time, as a step of the wall clock would (the boot
// clock stays); offset and every stand in for the wall clock less the boot
// clock and how often the agent compares them.
func (a *Agent) SetClock(shift func() time.Duration, offset func() (time.Duration, bool), every time.Duration) {
	a.clockShift, a.clockOffset, a.clockEvery = shift, offset, every
}
