package agent

// SetBookedCheck sets how many of the last bookings kept the agent looks up
// after Odoo was away, and returns what puts it back.
func SetBookedCheck(n int) (restore func()) {
	was := bookedCheck
	bookedCheck = n
	return func() { bookedCheck = was }
}
