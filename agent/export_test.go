package agent

import (
	"sync"
	"sync/atomic"
	"time"
)

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

// SetClock steps this box's wall clock as the agent sees it by what shift
// returns — the receive times of the samples it commits, and its looks at
// the clock (not the time a reload ends a stop at, nor the check at the
// start); the boot clock stays — and has it look every every; call it
// before Run.
func (a *Agent) SetClock(shift func() time.Duration, every time.Duration) {
	a.clockShift, a.clockEvery = shift, every
}

// WriteRunningSince is the buffer's (buffer.Queue.WriteRunningSince), once
// the buffer is open.
func (a *Agent) WriteRunningSince() time.Time {
	if !a.opened.Load() {
		return time.Time{}
	}
	return a.buf.WriteRunningSince()
}

// UnmappedCodesLogged is how many unmapped reason codes a machine has
// logged one by one an hour.
const UnmappedCodesLogged = unmappedCodesLogged

// SetLinesPerLoad sets the downtime lines a load carries as after loads
// Odoo took too long for (loadsize.go); the agent must be running.
func SetLinesPerLoad(a *Agent, n int) {
	a.fwd.mu.Lock()
	defer a.fwd.mu.Unlock()
	a.fwd.link.LinesPerLoad = n
}

// DoubtLines is how many downtime lines the forwarder holds as sent in a
// load left in doubt (forwarder.doubtLines); read it only once Run has
// returned.
func (a *Agent) DoubtLines() int { return len(a.fwd.doubtLines) }

// SetPendingScanBound sets how many records a scan of the pending counts
// may read while status or /metrics waits, and holds every background
// scan at its first chunk until release is called or the agent stops;
// restore puts both back. Not for parallel tests.
func SetPendingScanBound(n int) (release, restore func()) {
	was := pendingScanBound
	pendingScanBound = n
	held := make(chan struct{})
	var once sync.Once
	pendingScanChunk = func(a *Agent) {
		for !a.pendingDone.Load() {
			select {
			case <-held:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	release = func() { once.Do(func() { close(held) }) }
	return release, func() {
		release()
		pendingScanBound, pendingScanChunk = was, nil
	}
}

// HoldWaitedPendingScans holds every scan of the pending counts that a
// status or /metrics caller waits for before it reads the buffer, as a
// read waits behind a buffer write stalled in its commit's meta page,
// until release is called (restore calls it too, and puts the hook back);
// held says how many scans it has held. Not for parallel tests.
func HoldWaitedPendingScans() (held func() int, release, restore func()) {
	return holdAt(&pendingScanStarts)
}

// holdAt sets the test hook at to hold each caller until release (see
// HoldWaitedPendingScans, HoldWaitedReads).
func holdAt(at *atomic.Pointer[func()]) (held func() int, release, restore func()) {
	var n atomic.Int64
	hold := make(chan struct{})
	var once sync.Once
	hook := func() {
		n.Add(1)
		<-hold
	}
	at.Store(&hook)
	release = func() { once.Do(func() { close(hold) }) }
	return func() int { return int(n.Load()) }, release, func() {
		release()
		at.Store(nil)
	}
}

// HoldWaitedReads holds every read of the buffer that an API caller waits
// for (readWaitedWithin: status's work orders, the dead-letter list) before
// it begins, as a read waits behind a buffer write stalled in its commit's
// meta page, until release is called (restore calls it too, and puts the
// hook back); held says how many it has held. Not for parallel tests.
func HoldWaitedReads() (held func() int, release, restore func()) {
	return holdAt(&waitedReadStarts)
}

// SlowWaitedReads makes every read of the buffer that an API caller waits
// for (readWaitedWithin) begin d late, as on a busy machine; restore puts
// the hook back. Not for parallel tests.
func SlowWaitedReads(d time.Duration) (restore func()) {
	hook := func() { time.Sleep(d) }
	waitedReadStarts.Store(&hook)
	return func() { waitedReadStarts.Store(nil) }
}

// WriteRunning is for how long the buffer write in progress has run (0:
// none runs).
func (a *Agent) WriteRunning() time.Duration { return a.writeRunning() }
