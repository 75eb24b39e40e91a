package agent

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// A drain is the rounds that take a backlog to Odoo: records that were in
// the buffer before the round ahead of them began (an outage's, or those
// a round could not take: more downtime records than EventsPerRound). What
// bounds it is rounds, not records: a round books each machine's counts in
// one write however many records they are (a 6-hour backlog's 900,000
// records acknowledged at once at its end), and at most EventsPerRound
// downtime records. So the time left is the rounds left at the length of
// the drain's recent rounds, not the records left at the records' rate
// (the drain probe: after the first round took 900,000 records in 90 s, the
// 8,000 left would have been "1 s" away, and took a round of a minute).

// drainWindow is how many of a drain's completed rounds its rate and round
// length are measured over.
const drainWindow = 3

// DrainStatus is status's "drain" object, present while a backlog drains
// with Odoo online (absent otherwise).
type DrainStatus struct {
	// Round is the round under way; absent between rounds.
	Round *DrainRound `json:"round,omitempty"`
	// RoundsDone counts the drain's rounds that ended.
	RoundsDone int `json:"rounds_done"`
	// RecordsPerSecond is how many records left the buffer (reached Odoo,
	// or went to the dead letters) per second over WindowSeconds: the
	// drain's last rounds (up to 3) and the one under way. Null until a
	// round of the drain ended (a round acknowledges its counts at its end).
	RecordsPerSecond *float64 `json:"records_per_second"`
	WindowSeconds    float64  `json:"window_seconds,omitempty"`
	// RoundSeconds is how long a round of the drain takes, measured: the
	// mean of its last rounds (the first, which read the whole backlog of
	// counts, left out once a later one ended); while only the first has
	// ended, or none, the projected length of the round under way once its
	// count writes show their pace. Null before any of that.
	RoundSeconds *float64 `json:"round_seconds"`
	// DowntimeLeft is the downtime records (stops and runs) no round has
	// taken yet; RoundsLeft the rounds after the one under way that they
	// need, EventsPerRound a round (between rounds: the rounds left).
	DowntimeLeft int `json:"downtime_left"`
	RoundsLeft   int `json:"rounds_left"`
	// ETASeconds estimates the time until the backlog is in Odoo: what
	// RoundSeconds leaves of the round under way, plus RoundsLeft rounds
	// of RoundSeconds. Null while there is no round to measure by.
	ETASeconds *float64 `json:"eta_seconds"`
	// RoundsFailed counts the drain's rounds in a row that failed (absent
	// once one went through), LastFailure the last one's error: Odoo's
	// own line shows online between a failing round's calls that it
	// answers, its last error cleared, and the round under way alone
	// reads as progress (behind nginx, a load Odoo's worker was killed
	// for failed 41 rounds in a minute, the drain shown going on).
	RoundsFailed int    `json:"rounds_failed,omitempty"`
	LastFailure  string `json:"last_failure,omitempty"`
	// SizeChanged: the load size changed since the drain's rounds were
	// measured (loadsize.go), and no round at the size in force has ended
	// yet: the rounds before are no measure of those left, so RoundSeconds
	// and ETASeconds wait for one (or for the pace of the one under way).
	SizeChanged bool `json:"load_size_changed,omitempty"`
}

// DrainRound is what the round under way does.
type DrainRound struct {
	// Number is the round's number since the agent started (odoo.rounds_done
	// counts those that ended).
	Number  uint64  `json:"number"`
	Seconds float64 `json:"seconds"` // under way for
	// Phase is reading (the buffer, and the work orders in Odoo), downtime
	// (sending the loads of downtime lines), counts (writing each machine's
	// quantity and scrap) or acknowledging.
	Phase string `json:"phase"`
	// DowntimeClaimed is the downtime records the round took (each load's
	// acknowledged when Odoo has it); CountRecords the count records it
	// read, all acknowledged at its end: until then buffer.pending
	// includes them.
	DowntimeClaimed int `json:"downtime_claimed"`
	CountRecords    int `json:"count_records"`
	Loads           int `json:"loads"`
	LoadsSent       int `json:"loads_sent"`
	// Writes is the machines whose counts the round writes, WritesSent
	// those written so far.
	Writes     int `json:"writes"`
	WritesSent int `json:"writes_sent"`
	// RecordsLeft is the records the round took out of the buffer so far.
	RecordsLeft uint64 `json:"records_left_buffer"`
}

// Round phases (DrainRound.Phase).
const (
	phaseReading  = "reading"
	phaseDowntime = "downtime"
	phaseCounts   = "counts"
	phaseAcking   = "acknowledging"
)

// roundProgress is the round under way, as status shows it.
type roundProgress struct {
	number uint64
	start  time.Time
	left   uint64 // the forwarder's records-left counter at its start
	phase  string
	// maybe: begun with the buffer's oldest record older than the round
	// before; drain, decided once the round knows what it sends.
	maybe, decided, drain bool
	// read: readEvents has claimed the round's downtime records (events).
	read                        bool
	perRound                    int // the downtime records it could take (roundEvents)
	events, eventsAcked, counts int
	loads, loadsSent            int
	writes, writesSent          int
	countsAt                    time.Time // when its count writes began
}

// drainRoundTime is one completed round of a drain.
type drainRoundTime struct {
	start, end      time.Time
	leftAt, leftEnd uint64
	perRound        int // the downtime records it could take (0: not known)
}

// drainMeter follows the rounds of a drain (the forwarder's, under its
// mu): what the round under way does, and the drain's recent rounds.
type drainMeter struct {
	active bool
	rounds []drainRoundTime // the last drainWindow, oldest first
	first  bool             // rounds[0] is the drain's first round
	done   int
	cur    *roundProgress
	// failed counts the drain's rounds in a row that failed, failure the
	// last one's error (DrainStatus.RoundsFailed).
	failed  int
	failure string
}

// begin notes a round that starts; maybe says its buffer holds records
// from before the round ahead of it.
func (m *drainMeter) begin(number uint64, now time.Time, left uint64, maybe bool) {
	m.cur = &roundProgress{number: number, start: now, left: left, phase: phaseReading, maybe: maybe}
}

// decide notes whether the round under way sends a backlog.
func (m *drainMeter) decide(drain bool) {
	if m.cur == nil {
		return
	}
	m.cur.decided, m.cur.drain = true, drain
	switch {
	case drain && !m.active:
		*m = drainMeter{active: true, cur: m.cur}
	case !drain:
		m.active = false
	}
}

// progress applies fn to the round under way.
func (m *drainMeter) progress(fn func(*roundProgress)) {
	if m.cur != nil {
		fn(m.cur)
	}
}

// end notes the end of the round under way: err when it failed, more
// when it left downtime records for another.
func (m *drainMeter) end(now time.Time, left uint64, err error, more bool) {
	c := m.cur
	m.cur = nil
	if c == nil {
		return
	}
	if err != nil {
		// A failed round measures nothing; the drain goes on, and says
		// its rounds fail.
		if m.active {
			m.failed, m.failure = m.failed+1, err.Error()
		}
		return
	}
	m.failed, m.failure = 0, ""
	if !c.drain {
		m.active = false
		return
	}
	m.rounds = append(m.rounds, drainRoundTime{start: c.start, end: now, leftAt: c.left, leftEnd: left, perRound: c.perRound})
	if m.done == 0 {
		m.first = true
	}
	if len(m.rounds) > drainWindow {
		m.rounds, m.first = m.rounds[1:], false
	}
	m.done++
	if !more {
		m.active = false // the backlog is in Odoo; what came since is live
	}
}

// roundTime is the measured length of a round of the drain that takes
// perRound downtime records (ok false: none ended yet). A round at another
// load size is no measure of it (ux45: rounds of 2,000 stops gave the
// length of the rounds of 1,000 left after the size halved).
func (m *drainMeter) roundTime(perRound int) (time.Duration, bool) {
	rs := m.rounds
	if m.first && len(rs) > 1 {
		rs = rs[1:]
	}
	rs = slices.DeleteFunc(slices.Clone(rs), func(r drainRoundTime) bool { return cmp.Or(r.perRound, perRound) != perRound })
	if len(rs) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, r := range rs {
		sum += r.end.Sub(r.start)
	}
	return sum / time.Duration(len(rs)), true
}

// status is the drain as status shows it (nil: no drain); left is the
// records-left counter now, downtime the downtime records pending that
// can go (those held left out), perRound the downtime records a round
// takes at the load size in force (EventsPerRound at full size).
func (m *drainMeter) status(now time.Time, left uint64, downtime, perRound int) *DrainStatus {
	c := m.cur
	if !m.active && (c == nil || !c.maybe || c.decided) {
		return nil
	}
	ds := &DrainStatus{RoundsDone: m.done, RoundsFailed: m.failed, LastFailure: m.failure}
	inFlight := 0
	if c != nil {
		inFlight = c.events - c.eventsAcked
		ds.Round = &DrainRound{Number: c.number, Seconds: round1(now.Sub(c.start).Seconds()), Phase: c.phase,
			DowntimeClaimed: c.events, CountRecords: c.counts, Loads: c.loads, LoadsSent: c.loadsSent,
			Writes: c.writes, WritesSent: c.writesSent, RecordsLeft: left - c.left}
	}
	ds.DowntimeLeft = max(0, downtime-inFlight)
	ds.RoundsLeft = (ds.DowntimeLeft + perRound - 1) / perRound
	switch {
	case c == nil:
		ds.RoundsLeft = max(1, ds.RoundsLeft) // between rounds of a drain: one more at least
	case c.read && c.events < cmp.Or(c.perRound, EventsPerRound):
		// The round took every downtime record that could go: those
		// pending besides came since, live, for a round that is no drain's.
		ds.RoundsLeft = 0
	}
	if len(m.rounds) > 0 {
		from := m.rounds[0]
		if w := now.Sub(from.start).Seconds(); w > 0 {
			ds.WindowSeconds = round1(w)
			ds.RecordsPerSecond = ptr(round1(float64(left-from.leftAt) / w))
		}
	}
	per, perOK := m.roundTime(perRound) // a round's length, at the load size in force
	ds.SizeChanged = !perOK && len(m.rounds) > 0
	var cur time.Duration // what is left of the round under way
	curOK := c == nil
	if c != nil {
		el := now.Sub(c.start)
		paced := false // cur from this round's own pace
		switch {
		case c.phase == phaseCounts && c.writesSent >= minWrites(c.writes) && (!ds.SizeChanged || c.perRound == perRound):
			// (After the load size changed, only a round at the size in
			// force tells the rounds after it.)
			// Each machine's writes at the pace of those done: what
			// bounds a round (one or a few requests each, at
			// forward.rate), measured in this round.
			took := now.Sub(c.countsAt)
			cur, curOK, paced = took*time.Duration(c.writes-c.writesSent)/time.Duration(c.writesSent), true, true
		case c.phase == phaseAcking:
			cur, curOK, paced = 0, true, true
		case perOK:
			cur, curOK = max(0, per-el), true
		}
		if paced && (!perOK || m.first && len(m.rounds) == 1) {
			// The rounds after this one take about as long as it: better
			// known from it than from the drain's first round, which read
			// the whole backlog and looked up where its counts belong
			// (the drain probe: 94 s, and 70 s the next).
			per, perOK = el+cur, true
		}
	}
	if perOK {
		ds.RoundSeconds = ptr(round1(per.Seconds()))
	}
	if perOK && curOK {
		ds.ETASeconds = ptr(math.Round((cur + time.Duration(ds.RoundsLeft)*per).Seconds()))
	}
	return ds
}

// minWrites is how many of a round's writes must be done before their
// pace tells the time the rest take.
func minWrites(writes int) int {
	return max(1, min(writes, max(3, writes/20)))
}

// beginRound notes the round that starts (status shows it while a backlog
// may be in it) and returns the buffer's last sequence number when the
// round before began: what the round sends up to there is a backlog's.
func (f *forwarder) beginRound() (prevSeq uint64) {
	now, seq := time.Now(), f.a.buf.LastSeq()
	prevStart, prevSeq := f.prevStart, f.prevSeq
	first := prevStart.IsZero()
	if first {
		// The run's first round: what the buffer holds is from before.
		prevStart, prevSeq = now, seq
	}
	f.prevStart, f.prevSeq = now, seq
	// Shown as a drain's before it knows, only after a round that took
	// nothing (an outage) or at the start: after one that went through,
	// the old records are most likely held ones (a machine without a work
	// order), and status would show a drain for the moment of every read.
	maybe := false
	if first || !f.prevOK {
		st := f.a.buf.Stats()
		for _, l := range []buffer.Lane{buffer.LaneEvents, buffer.LaneCounts} {
			if o := st.Lanes[l].Oldest; !o.IsZero() && !o.After(prevStart) {
				maybe = true
			}
		}
	}
	f.mu.Lock()
	f.drain.begin(f.rounds, now, f.left.Load(), maybe)
	f.mu.Unlock()
	return prevSeq
}

// decideDrain tells whether the round sends a backlog: a downtime record,
// or a count record of a machine with a work order (held ones wait by
// design), that was in the buffer when the round before began.
func (f *forwarder) decideDrain(prevSeq uint64, events []pendingEvent, pending map[string]*pendingKey, wos map[string]*odoo.Workorder) {
	drain := false
	for _, e := range events {
		drain = drain || e.rec.Seq <= prevSeq
	}
	for k, p := range pending {
		if m, _ := splitKey(k); wos[m] != nil && p.minSeq <= prevSeq {
			drain = true
		}
	}
	f.mu.Lock()
	f.drain.decide(drain)
	f.mu.Unlock()
}

// roundProgress applies fn to the round under way (status's drain.round).
func (f *forwarder) roundProgress(fn func(*roundProgress)) {
	f.mu.Lock()
	f.drain.progress(fn)
	f.mu.Unlock()
}

// drainStatus is status's drain object (nil: no drain); eventsPending is
// the downtime records pending.
func (f *forwarder) drainStatus(now time.Time, eventsPending int) *DrainStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drain.status(now, f.left.Load(), eventsPending-f.orphansWaiting, loadsPerRound*f.loadLinesLocked())
}

// round1 rounds f to a tenth (status's seconds).
func round1(f float64) float64 { return math.Round(f*10) / 10 }

func ptr[T any](v T) *T { return &v }
