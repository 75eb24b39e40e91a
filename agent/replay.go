package agent

import (
	"cmp"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors"
)

// Values the broker kept for the agent — in its session while the agent was
// stopped or restarting, or while the agent's link to it was down — or
// that a gateway held while its own link was down, arrive late: not
// waited in this box's buffer, they looked live, and went to the work
// order in progress when they arrived (the work-order probe: three orders
// run during an agent stop had all their pieces booked on the third). How
// late a value came is its receipt time less its source time, less what
// that difference is for the source's values as they are made — the
// source's clock against this box's, and the latency: the least
// difference seen lately (offsets). A value that came replayLag late, or
// whose lateness and buffer wait add up to backlogAge, is a backlog, cut
// by order by the time it carries (madeEarlier, stopWorkorder).
//
// Only MQTT values are measured: an OPC UA value is read as it is, and a
// server's source timestamps may stand still while the value moves (a
// counter it does not stamp), which would look like lateness.

// replayLag: values that came this much later than their source's values
// as they are made were kept on their way (see above). Well above what a
// publisher's and a broker's latency vary by.
const replayLag = 10 * time.Second

// offsetWindow is how long the least receipt-less-source-time difference
// of a machine stands: it is the least of the last two windows, so a
// source's clock set forward (the difference smaller) is followed at once,
// one set back with a step at once too (see note), one that drifts back
// within two windows — meanwhile its values look late, and are attributed
// by the times they carry. Short, for that; long enough that a replay
// drains within it (a broker delivers a session's queue of thousands of
// messages in about a second; a replay that takes longer looks live from
// the second window on).
const offsetWindow = time.Minute

// offsetSaveStep: a machine's least difference is saved with its machine's
// state when it moved this much from what was saved — so that values
// replayed at the next start are measured against the difference before
// it, not against the replay's own.
const offsetSaveStep = time.Second

// offsets keeps, per machine, the least receipt-less-source-time
// difference (ms) of its values lately: a machine's counters and run state
// come from one publisher's clock, mostly, and its counters move with every
// piece, so that a stop, rare, is measured against them. (A machine whose
// signals come from two clocks a second apart or more takes the difference
// anew at each value of the clock behind that follows one of the clock
// ahead — a step back, to note — and so is mostly not measured.)
type offsets struct {
	mu     sync.Mutex
	m      map[string]*offsetMin
	window time.Duration // offsetWindow when 0
}

type offsetMin struct {
	cur, prev int64
	hasPrev   bool
	since     time.Time // when cur's window began
	saved     int64
	hasSaved  bool
	lastSrc   int64     // the source time (ms) of the last value noted
	rolls     int       // windows begun since it was made, restored or reset (clockOff)
	noted     time.Time // when a value was last noted (clockOff)
	// Steps back of the clock (the resets above): backs of them since
	// backsFrom, the last by splitBy at splitAt — many a window are two
	// clocks (clockSplit).
	backs              int
	backsFrom, splitAt time.Time
	splitBy            time.Duration
}

func (o *offsetMin) est() int64 {
	if o.hasPrev {
		return min(o.cur, o.prev)
	}
	return o.cur
}

// note takes a value of machine stamped src (ms) that came off ms after
// it, at now; it reports whether the estimate moved offsetSaveStep from
// the one saved, and what is shown of the machine's clock after it (one
// lock a value: noteOffset is on every stamped MQTT value's path). A value stamped more than clockBackStep before the last
// one noted shows the source's clock set back (an NTP step, a PLC on local
// time at the autumn change): a replay's values come in the order they
// were made, after those noted before it. The estimate is then that
// value's at once — before, the values after the step looked late for two
// windows, and were cut by the times they carry (the review: the new
// order's pieces dead-lettered as the finished one's).
func (o *offsets) note(machine string, src, off int64, now time.Time) (bool, sourceClock) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]*offsetMin{}
	}
	e := o.m[machine]
	switch {
	case e == nil:
		o.m[machine] = &offsetMin{cur: off, since: now, lastSrc: src, noted: now}
		return true, sourceClock{}
	case e.lastSrc != 0 && src < e.lastSrc-clockBackStep.Milliseconds():
		if now.Sub(e.backsFrom) > cmp.Or(o.window, offsetWindow) {
			e.backsFrom, e.backs = now, 0
		}
		e.backs++
		e.splitBy, e.splitAt = time.Duration(off-e.cur)*time.Millisecond, now
		e.cur, e.hasPrev, e.since, e.rolls = off, false, now, 0
	case now.Sub(e.since) >= cmp.Or(o.window, offsetWindow) || now.Before(e.since):
		e.prev, e.hasPrev = e.cur, true
		e.cur, e.since = off, now
		e.rolls++
	case off < e.cur:
		e.cur = off
	}
	e.lastSrc, e.noted = src, now
	d := e.est() - e.saved
	return !e.hasSaved || d >= offsetSaveStep.Milliseconds() || d <= -offsetSaveStep.Milliseconds(), e.clock(now)
}

// lag is how late a value of machine that came off ms after its source
// time was: 0 when nothing is known of machine, and for a machine whose
// source clock is more than backlogClockSlack off this box's (by the
// estimate): its times could not cut the values by order anyway
// (madeEarlier takes times up to its clock slack before an order's start
// as that order's), and its pieces go to the order in progress as they
// arrive, as before.
func (o *offsets) lag(machine string, off int64) time.Duration {
	if off == 0 {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.m[machine]
	if e == nil {
		return 0
	}
	est := time.Duration(e.est()) * time.Millisecond
	if est > backlogClockSlack || est < -backlogClockSlack {
		return 0
	}
	return max(0, time.Duration(off)*time.Millisecond-est)
}

// saved returns machine's estimate to keep with its state (nil: none),
// marking it saved, and the source time of its last value noted (0: none).
func (o *offsets) saved(machine string) (*int64, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.m[machine]
	if e == nil {
		return nil, 0
	}
	e.saved, e.hasSaved = e.est(), true
	v := e.saved
	return &v, e.lastSrc
}

// restore takes machine's saved estimate (from its state in the buffer
// file) as the current window's, and the source time of its last value
// noted as the one the next is compared with: a source clock set back
// while the agent was stopped (a PLC restarted with its clock behind) is
// followed at the first value after the start — before, its values looked
// late for two windows, and were cut by their stepped times.
func (o *offsets) restore(machine string, saved *int64, lastSrc int64) {
	if saved == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]*offsetMin{}
	}
	o.m[machine] = &offsetMin{cur: *saved, since: time.Now(), saved: *saved, hasSaved: true, lastSrc: lastSrc}
}

// backlog reports whether values buffered at buffered that came lag late
// are a backlog: lag replayLag or more, or lag and the wait in this box's
// buffer backlogAge together (zero buffered: nothing buffered).
func (f *forwarder) backlog(buffered time.Time, lag time.Duration) bool {
	if buffered.IsZero() {
		return false
	}
	return lag >= cmp.Or(f.a.opts.ReplayLag, replayLag) ||
		time.Since(buffered)+lag >= cmp.Or(f.a.opts.BacklogAge, backlogAge)
}

// recordSpan bounds the source times one count record spans (ms): a
// backlog is cut between records.
const recordSpan = 1000

// clockBackStep: a value stamped this much before the last one noted
// shows the source's clock set back (see note); within it, values a
// broker delivers out of order (mochi, within a second).
const clockBackStep = time.Second

// noteOffset notes how long after its source time t value s of machine
// came (MQTT values only, see offsets), marking machine's state changed
// when the estimate should be saved; it returns that time in ms (0 for
// other values). Caller holds stateMu.
func (a *Agent) noteOffset(s connectors.Sample, machine string, t time.Time, changed map[string]bool) int64 {
	// (0 when dated by its receipt — no timestamp_field, or a time out of
	// range — which tells nothing of the source's clock: noted, it pulled
	// the estimate to 0, and a source clock minutes behind made every value
	// look late: the review.)
	off, ok := sourceLate(s, t)
	if !ok {
		return 0
	}
	save, c := a.srcOff.note(machine, t.UnixMilli(), off, time.Now())
	if save {
		changed[machine] = true
	}
	if c.told() && !a.clockLog.skip(machine) { // (no message made for a line left out: every value of such a machine comes here)
		msg, attr, d := c.warning()
		a.clockLog.log(machine, a.log, slog.LevelWarn, msg, "machine", machine, attr, d.Round(time.Second))
	}
	return off
}

// offsetOf is how late (ms) sample s brought ev's value stamped t, noted
// (noteOffset) — but an edge node's stored (historical) values say nothing
// of its clock and are not noted (nor does the end it stored of a stop a
// BIRTH found on: mapping.Event.Stored); they come late all the same, and their
// records are attributed as a backlog's (lag). Caller holds stateMu.
func (a *Agent) offsetOf(s connectors.Sample, ev mapping.Event, t time.Time, changed map[string]bool) int64 {
	if ev.Historical || ev.Stored {
		off, _ := sourceLate(s, t)
		return off
	}
	return a.noteOffset(s, ev.Machine, t, changed)
}

// sourceLate is how late (ms) sample s brought a value stamped t by the
// source's clock; ok false when t is not the source's (see noteOffset).
func sourceLate(s connectors.Sample, t time.Time) (int64, bool) {
	if s.Kind != connectors.KindMQTT || t.IsZero() || s.ReceiveTime.IsZero() || t.Equal(s.ReceiveTime) {
		return 0, false
	}
	return s.ReceiveTime.Sub(t).Milliseconds(), true
}

// SourceClockOff: a source clock this far off this box's, by the times
// its MQTT values carry, is shown on its machine and logged (the tz
// probe: a PLC on New York time stamped as UTC had its downtime dated 5
// hours early in Odoo, and nothing said so).
const SourceClockOff = 2 * time.Minute

// sourceClock is what is shown of a machine's source clock (status,
// metrics, the log): how far it is off this box's (clockOff) and, when its
// values carry the times of two clocks, how far apart (clockSplit).
type sourceClock struct {
	off, split     time.Duration
	offOK, splitOK bool
}

// told reports whether the clock is to be told of (warning).
func (c sourceClock) told() bool {
	return c.offOK && (c.off >= SourceClockOff || c.off <= -SourceClockOff) || !c.offOK && c.splitOK
}

// warning is what to tell of the clock (the log, the machine's error), with
// the log attribute's name and value: "" when nothing — the offset less
// than SourceClockOff, or not measured and one clock.
func (c sourceClock) warning() (msg, attr string, d time.Duration) {
	switch {
	case !c.told():
	case c.offOK:
		return clockOffNote(c.off), "source_clock_offset", c.off
	default:
		return clockSplitNote(c.split), "apart", c.split
	}
	return "", "", 0
}

// clock is what is shown of machine's source clock (see clockOff and
// clockSplit).
func (o *offsets) clock(machine string) sourceClock {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.m[machine]
	if e == nil {
		return sourceClock{}
	}
	return e.clock(time.Now())
}

func (e *offsetMin) clock(now time.Time) sourceClock {
	var c sourceClock
	c.off, c.offOK = e.clockOff(now)
	c.split, c.splitOK = e.clockSplit(now)
	return c
}

// clockOff is how far the machine's source clock is off this box's (ahead:
// positive), by the least receipt-less-source-time difference of its
// values — latency included, a few ms — once both windows the estimate
// spans were of values noted in this run (not the estimate restored at a
// start, which a clock set right meanwhile makes wrong: the review; and a
// replay's values at a start, which came late, have gone out of them);
// false when not measured, or when no value was noted for an hour (a
// machine quiet, or gone: shorter, a machine that sends every few minutes
// had its offset shown and hidden by turns — the second review).
func (e *offsetMin) clockOff(now time.Time) (time.Duration, bool) {
	if e.rolls < 2 || now.Sub(e.noted) > clockOffKept {
		return 0, false
	}
	return -time.Duration(e.est()) * time.Millisecond, true
}

// clockSplit reports, of a machine whose values carry the times of two clocks
// at least SourceClockOff apart — its counters from a gateway on time, its
// run state from a PLC on local time sent as UTC, say — and by how much the
// one behind is: its values step back by that, again and again, so that
// clockOff never measures it (the review: 0 of 601 seconds shown).
func (e *offsetMin) clockSplit(now time.Time) (time.Duration, bool) {
	if e.backs < clockSplitBacks || now.Sub(e.splitAt) > clockOffKept || e.splitBy < SourceClockOff {
		return 0, false
	}
	return e.splitBy, true
}

// clockSplitBacks is how many steps back of a machine's clock within a
// window are taken for two clocks (an NTP step or a PLC set right is one).
const clockSplitBacks = 3

// clockOffKept is how long clockOff shows an offset after the last value
// it was measured on.
const clockOffKept = time.Hour

// unshow hides every machine's offset until two more windows of values are
// noted (clockOff), the estimates kept: at a reload, which may have removed
// a machine's timestamp_field — its offset would otherwise be shown for an
// hour, of values no longer stamped (the review).
func (o *offsets) unshow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.m {
		e.rolls = 0
	}
}

// clockSplitNote says what two clocks d apart on one machine do.
func clockSplitNote(d time.Duration) string {
	return fmt.Sprintf("the values of this machine carry the times of two clocks, one %s behind the other, by the times its MQTT values carry "+
		"(a PLC on local time sent as UTC, and a gateway on time?): its stops are dated by its run state's clock in Odoo; set the clock that is off", d.Round(time.Minute))
}

// clockOffNote says what a source clock d off this box's does.
func clockOffNote(d time.Duration) string {
	how := "ahead of"
	if d < 0 {
		how, d = "behind", -d
	}
	return fmt.Sprintf("source clock %s %s this box's, by the times its MQTT values carry (local time sent as UTC? a clock not set?): "+
		"its stops are dated so in Odoo, and a backlog of it is not sorted by work order; set the source's clock or time zone", d.Round(time.Minute), how)
}
