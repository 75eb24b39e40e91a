package mapping

import (
	"strconv"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// mqttHead is a configuration up to its machines, with one MQTT broker b.
const mqttHead = `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: "tcp://127.0.0.1:1883", client_id: pe }
machines:
`

// A 3-digit counter over MQTT without timestamp_field, published every
// 55 s (QoS 1); the agent is down for a few minutes and the broker
// delivers the queued messages in a burst, receive times 1 ms apart. The
// wrap 825 -> 100 in it fits the counter's usual step (275): a wrap, not
// a reset (which lost 175 pieces).
func TestBacklogWrapOfSmallCounter(t *testing.T) {
	m := newTestMapper(t, mqttHead+`  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: p2/good, field: v }, rollover: 1000 }
`)
	st := NewState()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	var sum float64
	send := func(v string, at time.Time) {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p2/good",
			Payload: []byte(`{"v":` + v + `}`), Good: true, ReceiveTime: at})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			sum += e.Delta
		}
	}
	send("0", t0)
	send("275", t0.Add(55*time.Second)) // live: steps of 275 every 55 s
	send("550", t0.Add(110*time.Second))
	// agent restarts; backlog burst 4 minutes later
	b := t0.Add(6 * time.Minute)
	send("825", b)
	send("100", b.Add(time.Millisecond))
	send("375", b.Add(2*time.Millisecond))
	if sum != 1375 {
		t.Errorf("counted %v, want 1375 (a wrap in the backlog taken as a reset)", sum)
	}
}

// One large plain step (below half the range: a preset, a glitch) a couple
// of seconds after the last reading sets no rate: a reset of the 16-bit
// counter from its upper half a day later, read 10 s after its last value,
// is a reset, not a wrap of 25,533 pieces nobody made.
func TestOneOddStepSetsNoRate(t *testing.T) {
	m := uaCounter16(t)
	st := NewState()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var last []Event
	send := func(v int, at time.Time) {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Value: int32(v), Good: true, SourceTime: at})
		if err != nil {
			t.Fatal(err)
		}
		last = evs
	}
	send(100, t0)
	send(20100, t0.Add(2*time.Second)) // a preset / glitch: rate 10,000/s
	st = restart(t, m, st)
	day := t0.Add(24 * time.Hour)
	send(40003, day)
	send(0, day.Add(10*time.Second)) // operator resets the counter
	if len(last) != 1 || last[0].Rollover {
		t.Errorf("a reset 10 s after 40003 booked as a wrap: %+v", last)
	}
}

// EndStop ends a stop like a restart does: stamped before the stop (the
// PLC's clock ahead of the agent's), the interval is empty and keeps the
// stop's start, which keys the line opened at the stop.
func TestEndStopKeepsTheStopsStart(t *testing.T) {
	m := newTestMapper(t, mqttHead+`  - id: p1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: p1/run } }
`)
	st := NewState()
	stop := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	if _, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p1/run",
		Payload: []byte("false"), Good: true, ReceiveTime: stop}); err != nil {
		t.Fatal(err)
	}
	evs, changed := m.EndStop(st, "p1", stop.Add(-time.Minute), connectors.Seen{})
	if !changed || len(evs) != 1 || evs[0].Kind != EventRunning || !evs[0].Start.Equal(stop) || !evs[0].End.Equal(stop) {
		t.Errorf("EndStop before the stop's start: %+v, changed %v", evs, changed)
	}
	if ms := st.Machines["p1"]; ms.Running != nil || !ms.StopStart.IsZero() {
		t.Errorf("state after EndStop: %+v", ms)
	}
}

// A counter that wraps, read without source times: a late reading from
// before the wrap (65530 → 10 → 65531 → 12), or a signed counter's -1
// read as 65535 after 100, is up by more than half the range, sooner than
// the counter makes that: a step back across the wrap, not some 65,000
// pieces (the values probe: 65,554 booked for 18, and 65,541 for 5). After
// a longer gap such an increase still counts.
func TestStepBackAcrossTheWrap(t *testing.T) {
	for _, c := range []struct {
		name   string
		values []string
		gaps   []time.Duration // before each value but the first; 1 s when nil
		want   float64
		backs  int
	}{
		{name: "late reading across the wrap", values: []string{"65500", "65530", "10", "65531", "12"}, want: 48, backs: 1},
		{name: "signed -1", values: []string{"95", "100", "-1", "102", "105"}, want: 10, backs: 1},
		{name: "a real wrap", values: []string{"65000", "65500", "100", "600"}, want: 1136},
		{name: "after a long gap it counts", values: []string{"5", "10", "40000"}, gaps: []time.Duration{time.Second, 10 * time.Minute}, want: 39995},
		{name: "not within a tenth: counted", values: []string{"5", "10", "40000"}, want: 39995},
		// a preset near the top, then counting on: a rising series is no
		// step back (one late reading is)
		{name: "rising after it: counted", values: []string{"100", "105", "65000", "65010"}, want: 64910, backs: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			send, counted := feed16(t)
			var at time.Duration
			backs := 0
			for i, v := range c.values {
				if i > 0 {
					gap := time.Second
					if c.gaps != nil {
						gap = c.gaps[i-1]
					}
					at += gap
				}
				for _, e := range send(v, at) {
					if e.StepBack {
						backs++
					}
				}
			}
			if *counted != c.want || backs != c.backs {
				t.Errorf("counted %v with %d steps back, want %v with %d", *counted, backs, c.want, c.backs)
			}
		})
	}
}

// The rule above must not take a line that ran faster than its learned
// rate for steps back (the review of it: 66 of 64,542 pieces counted). Its
// usual rate learned while slow, the link (or the agent) is down while the
// line runs faster, and readings come every second again, past the wrap:
// every piece counts (past wrapBackWindow, as in the last case, 50 s, a
// step back kept Last and the wrap that came next was taken for a reset:
// 9,180 lost).
func TestFasterThanLearnedAcrossHalfTheRange(t *testing.T) {
	for _, c := range []struct {
		name      string
		rollover  int64
		learnStep int64 // per 5 s
		gap       time.Duration
		speed     int64 // pieces/s during and after the gap
		start     int64
	}{
		{"16-bit 2/s learned, 30 min at 33/s", 65536, 10, 30 * time.Minute, 33, 1000},
		{"rollover 10000, 2/s learned, 10 min at 15/s", 10000, 10, 10 * time.Minute, 15, 300},
		{"rollover 10000, 5/s learned, 820 s at 11/s", 10000, 25, 820 * time.Second, 11, 300},
		{"rollover 10000, 2/s learned, 50 s at 180/s", 10000, 10, 50 * time.Second, 180, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newTestMapper(t, mqttHead+`  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: p2/good }, rollover: `+strconv.FormatInt(c.rollover, 10)+` }
`)
			st := NewState()
			at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
			var sum, made float64
			v := c.start
			send := func() {
				evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p2/good",
					Payload: []byte(strconv.FormatInt(v, 10)), Good: true, ReceiveTime: at})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					sum += e.Delta
				}
			}
			advance := func(d time.Duration, n int64) {
				at, v, made = at.Add(d), v+n, made+float64(n)
			}
			send()
			for range 6 { // slow: the usual rate learned
				advance(5*time.Second, c.learnStep)
				send()
			}
			advance(c.gap, c.speed*int64(c.gap/time.Second))
			if v >= c.rollover {
				t.Fatalf("wrapped in the gap: pick other numbers (%d)", v)
			}
			send()
			for { // a reading a second, past the wrap
				advance(time.Second, c.speed)
				if v >= c.rollover {
					v -= c.rollover
					send()
					break
				}
				send()
			}
			if sum != made {
				t.Errorf("made %v, counted %v", made, sum)
			}
		})
	}
}

// A line stopped for an hour, its MQTT publisher repeating the counter
// every 10 s, then reset by the operator: a reset, not a wrap of the range
// above it (the countersim probe: 0 after an hour at 40,000 booked 25,536
// pieces never made; OPC UA's watch already bounded the time). Without
// the repeats, an hour's gap may hold a wrap, as before.
func TestResetAfterAStopReadOverMQTTIsNoWrap(t *testing.T) {
	m := newTestMapper(t, mqttHead+`  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: p2/good }, rollover: 65536 }
`)
	for _, repeats := range []bool{true, false} {
		st := NewState()
		at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
		var sum float64
		var wrapped bool
		send := func(v int) {
			evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p2/good",
				Payload: []byte(strconv.Itoa(v)), Good: true, ReceiveTime: at})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				sum += e.Delta
				wrapped = wrapped || e.Rollover
			}
		}
		for v := 39000; v <= 40000; v += 20 { // 2 pieces/s, a reading every 10 s
			send(v)
			at = at.Add(10 * time.Second)
		}
		for range 360 { // stopped an hour
			if repeats {
				send(40000)
			}
			at = at.Add(10 * time.Second)
		}
		send(0) // reset by the operator
		at = at.Add(10 * time.Second)
		send(20)
		want := 1000.0 + 20
		if !repeats {
			want = 1000 + 25536 + 20 // a wrap fits an hour unseen at the learned rate
		}
		if sum != want || wrapped == repeats {
			t.Errorf("repeats %v: counted %v (wrap %v), want %v", repeats, sum, wrapped, want)
		}
	}
}

// The top of a wrapping counter's range read far above what the counter
// makes — a -1 of a signed counter, or 65535 — mid-range: a "no value"
// marker, not counted, and the next reading counts from the last one (the
// countersim probe: 30000, -1, 30014 booked 65,545 pieces for 14). While
// the rate is not known, or when the counter gets there at its pace, it
// counts as before.
func TestTopOfTheRangeFarAboveTheRateIsAMarker(t *testing.T) {
	for _, c := range []struct {
		name    string
		values  []string
		want    float64
		markers int
	}{
		{"-1 mid-range", []string{"29990", "29992", "29994", "29996", "29998", "30000", "-1", "30014"}, 24, 1},
		{"65535 mid-range, twice", []string{"29990", "29992", "29994", "29996", "29998", "30000", "65535", "65535", "30002"}, 12, 1},
		{"reached at its pace", []string{"65525", "65527", "65529", "65531", "65533", "65535", "1"}, 12, 0},
		{"rate not known yet", []string{"29990", "30000", "65535"}, 35545, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			send, counted := feed16(t)
			markers := 0
			for i, v := range c.values {
				for _, e := range send(v, time.Duration(i)*time.Second) {
					if e.Marker {
						markers++
					}
				}
			}
			if *counted != c.want || markers != c.markers {
				t.Errorf("counted %v with %d markers, want %v with %d", *counted, markers, c.want, c.markers)
			}
		})
	}
}

// Read again unchanged during a stop, the counter's unseen time is the
// time since that reading — not none: the first version took the MQTT
// sample's zero gap for it, and a wrap after a 30-minute link outage that
// followed a stop was booked as a reset (the re-review: 3,344 of 3,880).
func TestLinkOutageAfterAStopStillWraps(t *testing.T) {
	feed, counted := feed16(t)
	send := func(v, sec int) { feed(strconv.Itoa(v), time.Duration(sec)*time.Second) }
	for s := 0; s <= 100; s += 10 { // 2 pieces/s, a reading every 10 s
		send(64800+2*s, s)
	}
	for s := 110; s <= 220; s += 10 { // stopped, the value repeated
		send(65000, s)
	}
	// The link is down for 30 minutes while the line runs again at 2/s.
	for s := 2020; s <= 2060; s += 10 {
		send((65000+2*(s-220))%65536, s)
	}
	if want := 200.0 + 3600 + 80; *counted != want {
		t.Errorf("counted %v, want %v", *counted, want)
	}
}

// A gateway that lost its PLC goes on publishing the cached value while
// the line runs on and the counter wraps: the value after the reconnect is
// more than a reset could have climbed to since the last repeat, so the
// repeats were stale and the wrap counts (the re-review: 4,964 of 8,500).
// A value a reset fits (near 0) after repeats is still a reset.
func TestStaleRepeatsDoNotHideAWrap(t *testing.T) {
	feed, counted := feed16(t)
	send := func(v, sec int) { feed(strconv.Itoa(v), time.Duration(sec)*time.Second) }
	for s := 0; s <= 400; s += 10 { // 5 pieces/s
		send(60000+5*s, s)
	}
	for s := 410; s <= 1600; s += 10 { // the gateway's cached value
		send(62000, s)
	}
	for s := 1610; s <= 1700; s += 10 { // the real counter again, past the wrap
		send((60000+5*s)%65536, s)
	}
	if want := 5.0 * 1700; *counted != want {
		t.Errorf("counted %v, want %v", *counted, want)
	}
}

// feed16 returns send, which gives a 16-bit MQTT counter without source
// times the payload v, received at into the run, and returns its events;
// counted is the pieces counted so far.
func feed16(t *testing.T) (send func(v string, at time.Duration) []Event, counted *float64) {
	t.Helper()
	return feedCounter(t, 65536)
}

// feedCounter is feed16 for a counter that wraps at rollover.
func feedCounter(t *testing.T, rollover int) (send func(v string, at time.Duration) []Event, counted *float64) {
	t.Helper()
	m := newTestMapper(t, mqttHead+`  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, topic: p2/good }, rollover: `+strconv.Itoa(rollover)+` }
`)
	st := NewState()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	counted = new(float64)
	return func(v string, at time.Duration) []Event {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p2/good",
			Payload: []byte(v), Good: true, ReceiveTime: t0.Add(at)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			*counted += e.Delta
		}
		return evs
	}, counted
}

// After a long stop read again every 10 s, a value a little lower (a PLC
// power cycle restoring an older value) is still a step back, and a reset
// followed by a restart faster than the learned rate is still a reset: the
// stale-repeats rule is for the wrap alone (the second re-review: 41,310
// for 1,360, and 27,166 for 1,630).
func TestAfterALongStopStepBacksAndResetsHold(t *testing.T) {
	for _, c := range []struct {
		name  string
		after []int // the values after the stop, 10 s apart
		want  float64
	}{
		{"restored 50 lower", []int{40550, 40570, 40590, 40610, 40630}, 600 + 30},
		{"reset unseen, restart at 7/s", []int{70, 140, 210}, 600 + 210},
	} {
		t.Run(c.name, func(t *testing.T) {
			feed, counted := feed16(t)
			sec := 0
			send := func(v int) {
				feed(strconv.Itoa(v), time.Duration(sec)*time.Second)
				sec += 10
			}
			for v := 40000; v <= 40600; v += 20 { // 2 pieces/s
				send(v)
			}
			for range 6 * 360 { // stopped 6 hours, the value repeated
				send(40600)
			}
			for _, v := range c.after {
				send(v)
			}
			if *counted != c.want {
				t.Errorf("counted %v, want %v", *counted, c.want)
			}
		})
	}
}

// An OPC UA counter without source times, monitored: it changes every
// 0.3 s while it runs (+1 or +2), stands 6 s at each stop, and wraps
// across a 3 s outage of the server (a new session: a new watch) by 14
// pieces. Its rate is learned from its live increases added up by receive
// time (about 5 pieces/s): the wrap counts 14 (the soak booked 8: it had
// learned 0.3 pieces/s from the steps across its stops alone, and took
// the wrap for a reset). Over MQTT without a source time nothing changed:
// a session's queue may come in a burst, so sub-second steps teach no rate
// (a timestamp_field gives the source times that do).
func TestLiveOPCUACounterWithoutSourceTimesLearnsItsRate(t *testing.T) {
	m := uaCounter16(t)
	st := NewState()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var counted float64
	watch := uint64(1)
	send := func(v int, at time.Duration) {
		evs, _, err := m.Apply(st, connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Value: int32(v % 65536), Good: true, ReceiveTime: t0.Add(at), Watch: watch, WatchGap: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			counted += e.Delta
		}
	}
	at, v := time.Duration(0), 65000
	send(v, at)
	for stop := range 6 {
		for range 20 {
			at += 300 * time.Millisecond
			v += 1 + stop%2
			send(v, at)
		}
		at += 6 * time.Second // stopped: nothing changes, nothing sent
		v++
		send(v, at)
	}
	for v < 65530 {
		at += 300 * time.Millisecond
		v += 2
		send(v, at)
	}
	made := float64(v - 65000)
	watch = 2 // the server was away 3 s: a new session
	at += 3 * time.Second
	v += 14
	send(v, at)
	if want := made + 14; counted != want {
		t.Errorf("counted %v, want %v: the wrap %d -> %d read as a reset", counted, want, (v-14)%65536, v%65536)
	}
}

// uaCounter16 is a mapper of one machine whose good count is the 16-bit
// OPC UA node ns=2;s=Good of server plc.
func uaCounter16(t *testing.T) *Mapper {
	t.Helper()
	return newTestMapper(t, `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
opcua:
  - { name: plc, endpoint: "opc.tcp://127.0.0.1:4840" }
machines:
  - id: p1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=2;s=Good" }, rollover: 65536 }
`)
}
