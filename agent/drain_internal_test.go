package agent

import (
	"errors"
	"testing"
	"time"
)

func f64(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// The estimator over a drain like the drain probe's: a first round that
// takes the whole backlog of counts and 2,000 stops in 90 s, then rounds of
// 60 s for the stops left, EventsPerRound each.
func TestDrainMeterEstimatesRoundsLeftAtTheRoundsLength(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var m drainMeter

	// Round 1 under way: what it does, no rate nor time left yet.
	m.begin(7, at(0), 1000, true)
	if ds := m.status(at(1), 1000, 4500, EventsPerRound); ds == nil || ds.Round.Phase != phaseReading {
		t.Fatalf("before the round knows what it sends, with old records: %+v, want the round reading", ds)
	}
	m.decide(true)
	m.progress(func(p *roundProgress) {
		p.events, p.read, p.counts, p.phase, p.loads = 2000, true, 900000, phaseDowntime, 10
	})
	m.progress(func(p *roundProgress) { p.loadsSent, p.eventsAcked = 4, 800 })
	ds := m.status(at(30), 1800, 4500-800, EventsPerRound)
	if ds == nil || ds.Round == nil {
		t.Fatal("no drain during its first round")
	}
	if r := ds.Round; r.Number != 7 || r.Seconds != 30 || r.DowntimeClaimed != 2000 || r.CountRecords != 900000 || r.LoadsSent != 4 || r.Loads != 10 || r.RecordsLeft != 800 {
		t.Errorf("round %+v", *r)
	}
	if ds.RecordsPerSecond != nil || ds.ETASeconds != nil || ds.RoundSeconds != nil {
		t.Errorf("first round under way: rate %v, round %v, eta %v; want null (no round ended)", f64(ds.RecordsPerSecond), f64(ds.RoundSeconds), f64(ds.ETASeconds))
	}
	// 4,500 pending of which 1,200 claimed and not yet sent: 2,500 left,
	// two rounds after this one.
	if ds.DowntimeLeft != 2500 || ds.RoundsLeft != 2 {
		t.Errorf("downtime left %d, rounds left %d; want 2500, 2", ds.DowntimeLeft, ds.RoundsLeft)
	}
	// Its count writes: from a few done on, their pace tells the rest of
	// the round (80 left at 0.5 s), and the rounds after take as long as
	// it (2 for the 2,500 downtime records left).
	m.progress(func(p *roundProgress) {
		p.loadsSent, p.eventsAcked, p.phase, p.writes, p.countsAt = 10, 2000, phaseCounts, 100, at(40)
	})
	m.progress(func(p *roundProgress) { p.writesSent = 4 })
	if ds = m.status(at(42), 3000, 2500, EventsPerRound); ds.ETASeconds != nil {
		t.Errorf("4 of 100 writes done: eta %v, want none yet", f64(ds.ETASeconds))
	}
	m.progress(func(p *roundProgress) { p.writesSent = 20 })
	ds = m.status(at(50), 3000, 2500, EventsPerRound)
	if ds.RoundsLeft != 2 || f64(ds.RoundSeconds) != 90.0 || f64(ds.ETASeconds) != 40+2*90.0 || ds.RecordsPerSecond != nil {
		t.Errorf("20 of 100 writes done in 10 s, 50 s into the round: rounds left %d, round %v, eta %v, rate %v; want 2, 90, 220, none",
			ds.RoundsLeft, f64(ds.RoundSeconds), f64(ds.ETASeconds), f64(ds.RecordsPerSecond))
	}
	m.end(at(90), 1000+902000, nil, true)

	// Between rounds: 2 rounds of 90 s.
	ds = m.status(at(90), 903000, 2500, EventsPerRound)
	if ds == nil || ds.Round != nil || ds.RoundsDone != 1 {
		t.Fatalf("between rounds: %+v", ds)
	}
	if f64(ds.RoundSeconds) != 90.0 || f64(ds.ETASeconds) != 180.0 || f64(ds.RecordsPerSecond) != round1(902000/90.0) {
		t.Errorf("after round 1: round %v eta %v rate %v; want 90, 180, %v", f64(ds.RoundSeconds), f64(ds.ETASeconds), f64(ds.RecordsPerSecond), 902000/90.0)
	}

	// Round 2, 20 s in: 70 s of it left, one round after.
	m.begin(8, at(90), 903000, true)
	m.decide(true)
	m.progress(func(p *roundProgress) { p.events, p.read = 2000, true })
	ds = m.status(at(110), 903000, 2500, EventsPerRound)
	if ds.RoundsLeft != 1 || f64(ds.ETASeconds) != 160.0 {
		t.Errorf("round 2 at 20 s: rounds left %d eta %v; want 1, 160", ds.RoundsLeft, f64(ds.ETASeconds))
	}
	// Past the measured length: the round is due, nothing negative.
	if ds = m.status(at(200), 903000, 2500, EventsPerRound); f64(ds.ETASeconds) != 90.0 {
		t.Errorf("round 2 at 110 s: eta %v; want 90 (the round due, one after)", f64(ds.ETASeconds))
	}
	// Its writes' pace known (44 of 88 in 20 s, 30 s into it: 20 s left),
	// it tells the round after better than the first round did: 50 s.
	m.progress(func(p *roundProgress) { p.phase, p.writes, p.writesSent, p.countsAt = phaseCounts, 88, 44, at(100) })
	if ds = m.status(at(120), 903000, 2500, EventsPerRound); f64(ds.RoundSeconds) != 50.0 || f64(ds.ETASeconds) != 20+50.0 {
		t.Errorf("round 2 paced: round %v eta %v; want 50, 70", f64(ds.RoundSeconds), f64(ds.ETASeconds))
	}
	m.end(at(150), 903000+2100, nil, true)

	// Round 1, which read the whole backlog, left out now: 60 s a round.
	ds = m.status(at(150), 905100, 500, EventsPerRound)
	if f64(ds.RoundSeconds) != 60.0 || ds.RoundsLeft != 1 || f64(ds.ETASeconds) != 60.0 {
		t.Errorf("after round 2: round %v, rounds left %d, eta %v; want 60, 1, 60", f64(ds.RoundSeconds), ds.RoundsLeft, f64(ds.ETASeconds))
	}
	if f64(ds.RecordsPerSecond) != round1(904100/150.0) || ds.WindowSeconds != 150 {
		t.Errorf("rate %v over %v s; want %v over 150", f64(ds.RecordsPerSecond), ds.WindowSeconds, 904100/150.0)
	}

	// A round that fails (a timeout) measures nothing; the drain goes on.
	m.begin(9, at(150), 905100, true)
	m.decide(true)
	m.end(at(155), 905100, errors.New("timed out"), false)
	if ds = m.status(at(160), 905100, 500, EventsPerRound); ds == nil || ds.RoundsDone != 2 {
		t.Fatalf("after a failed round: %+v, want the drain, 2 rounds done", ds)
	}

	// The last round: it took every downtime record that could go (those
	// pending now came since), no round after it; over at its end.
	m.begin(10, at(160), 905100, true)
	m.decide(true)
	m.progress(func(p *roundProgress) { p.events, p.read = 500, true })
	if ds = m.status(at(170), 905100, 530, EventsPerRound); ds.RoundsLeft != 0 || f64(ds.ETASeconds) != 50.0 {
		t.Errorf("the last round 10 s in: rounds left %d, eta %v; want 0, 50", ds.RoundsLeft, f64(ds.ETASeconds))
	}
	m.end(at(200), 905700, nil, false)
	if ds = m.status(at(201), 905700, 0, EventsPerRound); ds != nil {
		t.Errorf("after the round that left nothing: %+v, want no drain", *ds)
	}
}

// Live rounds are no drain: nothing shown, also not while a round reads a
// buffer whose oldest records are held (counts waiting for a work order)
// once it knows that.
func TestDrainMeterIdle(t *testing.T) {
	t0 := time.Now()
	var m drainMeter
	m.begin(1, t0, 0, false)
	if ds := m.status(t0, 0, 3, EventsPerRound); ds != nil {
		t.Errorf("live round reading: %+v", *ds)
	}
	m.decide(false)
	m.end(t0.Add(time.Second), 10, nil, false)
	m.begin(2, t0.Add(2*time.Second), 10, true) // held records in the buffer
	m.decide(false)
	if ds := m.status(t0.Add(3*time.Second), 10, 0, EventsPerRound); ds != nil {
		t.Errorf("a round sending live records only: %+v", *ds)
	}
	m.end(t0.Add(4*time.Second), 20, nil, false)
	if ds := m.status(t0.Add(5*time.Second), 20, 0, EventsPerRound); ds != nil {
		t.Errorf("between live rounds: %+v", *ds)
	}
	// A new drain starts afresh: nothing of an earlier one's rounds.
	m.begin(3, t0.Add(6*time.Second), 20, true)
	m.decide(true)
	if ds := m.status(t0.Add(7*time.Second), 20, 0, EventsPerRound); ds == nil || ds.RoundsDone != 0 || ds.ETASeconds != nil {
		t.Errorf("a new drain's first round: %+v", ds)
	}
}

// A drain whose rounds keep failing says so, with the last round's error:
// behind nginx, a load Odoo's worker was killed for came back 502 41 times
// in a minute, and status said "backlog going to Odoo, time left known
// once the first round ends; round 42 under way" — with Odoo shown online
// between the round's calls, its last error cleared — as if it went on.
func TestDrainMeterCountsTheRoundsThatFailed(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var m drainMeter
	killed := errors.New("odoo mrp.workcenter.productivity.load: 502 Bad Gateway (http 502)")
	for i := range 3 {
		m.begin(uint64(i+1), at(float64(2*i)), 0, true)
		m.decide(true)
		m.progress(func(p *roundProgress) { p.events, p.read, p.phase, p.loads = 600, true, phaseDowntime, 3 })
		m.end(at(float64(2*i+1)), 0, killed, true)
	}
	m.begin(4, at(6), 0, true)
	m.decide(true)
	ds := m.status(at(6.5), 0, 600, EventsPerRound)
	if ds == nil || ds.RoundsFailed != 3 || ds.LastFailure != killed.Error() {
		t.Fatalf("after 3 failed rounds: %+v, want rounds_failed 3 and the last one's error", ds)
	}
	m.end(at(7), 600, nil, true)
	if ds = m.status(at(7), 600, 0, EventsPerRound); ds == nil || ds.RoundsFailed != 0 || ds.LastFailure != "" {
		t.Fatalf("after a round that went through: %+v, want no failed rounds", ds)
	}
}

// After the load size shrank (loadsize.go), the rounds measured at the
// size before are no measure of the rounds left, which carry fewer
// downtime records each (ux45: the rounds left were counted at the new
// size, each at the length of a round at the old one): the time left is
// not given until a round at the size in force ends, or paces itself.
func TestDrainMeterAfterTheLoadSizeChanged(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var m drainMeter
	full, half := EventsPerRound, EventsPerRound/2
	round := func(n uint64, from, to float64, perRound, events int) {
		m.begin(n, at(from), 0, true)
		m.decide(true)
		m.progress(func(p *roundProgress) { p.events, p.read, p.perRound = events, true, perRound })
		m.end(at(to), 0, nil, true)
	}
	round(1, 0, 90, full, full)
	round(2, 90, 150, full, full)
	round(3, 150, 210, full, full)
	if ds := m.status(at(210), 0, 3*full, full); f64(ds.RoundSeconds) != 60.0 || f64(ds.ETASeconds) != 180.0 || ds.SizeChanged {
		t.Fatalf("at full size: round %v, eta %v, size changed %v; want 60, 180, false", f64(ds.RoundSeconds), f64(ds.ETASeconds), ds.SizeChanged)
	}
	// The size halved: twice the rounds, and no round at this size yet.
	ds := m.status(at(211), 0, 3*full, half)
	if ds.RoundsLeft != 6 || ds.ETASeconds != nil || ds.RoundSeconds != nil || !ds.SizeChanged {
		t.Errorf("halved, between rounds: rounds left %d, round %v, eta %v, size changed %v; want 6, none, none, true",
			ds.RoundsLeft, f64(ds.RoundSeconds), f64(ds.ETASeconds), ds.SizeChanged)
	}
	// A round at the new size ended: the measure.
	round(4, 211, 241, half, half)
	ds = m.status(at(241), 0, 3*full-half, half)
	if ds.RoundsLeft != 5 || f64(ds.RoundSeconds) != 30.0 || f64(ds.ETASeconds) != 150.0 || ds.SizeChanged {
		t.Errorf("after a round at the new size: rounds left %d, round %v, eta %v, size changed %v; want 5, 30, 150, false",
			ds.RoundsLeft, f64(ds.RoundSeconds), f64(ds.ETASeconds), ds.SizeChanged)
	}
}
