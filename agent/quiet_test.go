package agent_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/internal/nettest"
)

const quietNote = "good_count: no value for"

// The counter's own broker down for longer than the limit, then back: the
// counter (sent on change, not retained) has had no chance to send, and
// the watch starts anew at the connect, as at a start — right after the
// reconnect the note said "no value for" the outage (review 44, not
// fixed). The watch still runs: nothing comes, the note comes.
func TestQuietCounterWatchStartsAtTheCountersReconnect(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.countQuiet = 3 * time.Second
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 1, 0)
	waitFor(t, 10*time.Second, "press-1 running", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return ms.State == "running", ms.State
	})
	addr := p.broker.Addr()
	p.broker.Close()
	waitFor(t, 10*time.Second, "the broker seen down", func() (bool, string) {
		s := ra.a.Status().Sources[0]
		return s.State != "connected", s.State
	})
	time.Sleep(p.countQuiet + time.Second)
	b, err := mqtttest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p.broker = b
	var back time.Time
	waitFor(t, 20*time.Second, "the broker back", func() (bool, string) {
		st := ra.a.Status()
		if st.Sources[0].State == "connected" && back.IsZero() {
			back = time.Now()
		}
		return !back.IsZero(), st.Sources[0].State
	})
	for time.Since(back) < p.countQuiet/2 {
		ms := ra.a.Status().Machines[0]
		if ms.State == "running" && strings.Contains(ms.Error, quietNote) {
			t.Fatalf("%s after the broker came back: %s", time.Since(back).Round(time.Millisecond), ms.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "the note, the counter still quiet", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return ms.State == "running" && strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	})
}

// A run state restored at a start (the durable state) that nothing has
// confirmed since — an on-change publisher, the machine stopped while the
// agent was down — is not a run: its counter is not noted quiet ("topic
// mistyped?" on a stopped machine; review 44, not fixed). Once a run-state
// value comes, the watch runs.
func TestQuietCounterNotNotedOnARestoredRunStateNotConfirmed(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.countQuiet = 2 * time.Second
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 1, 0)
	p.waitExactQty(ra, "press-1", 1)
	ra.stop()
	// Its counter mistyped meanwhile: the note must come once it runs.
	p.editConfig("good_count: { mqtt: { broker: broker, topic: plant/press-1,", "good_count: { mqtt: { broker: broker, topic: plant/press-1x,")
	ra = p.startAgentWith(false)
	started := time.Now()
	for time.Since(started) < 2*p.countQuiet {
		ms := ra.a.Status().Machines[0]
		if ms.State == "running" && strings.Contains(ms.Error, quietNote) {
			t.Fatalf("%s after the start, no run state since: %s", time.Since(started).Round(time.Millisecond), ms.Error)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := ra.a.Status().Machines[0].State; st != "running" {
		t.Fatalf("state %s, want the restored running", st)
	}
	waitFor(t, 20*time.Second, "the note once the run state comes", func() (bool, string) {
		p.produce(m, 0, 0) // its run state (the count goes to plant/press-1)
		ms := ra.a.Status().Machines[0]
		return ms.State == "running" && strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	})
}

// quiet_after under a machine's good_count sets its limit: longer than
// the default (a press making a piece every 20-40 minutes: the note was
// there for good, and nothing could quiet it — review 44, not fixed), or
// off. A machine without it keeps the default.
func TestQuietCounterLimitSetPerMachine(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}})
	p.countQuiet = 2 * time.Second
	for id, quiet := range map[string]string{"press-1": ", quiet_after: 1h", "press-2": ", quiet_after: off", "press-3": ""} {
		p.editConfig("good_count: { mqtt: { broker: broker, topic: plant/"+id+", field: good, timestamp_field: ts } }",
			"good_count: { mqtt: { broker: broker, topic: plant/"+id+"x, field: good, timestamp_field: ts }"+quiet+" }")
	}
	ra := p.startAgent()
	check := func() (bool, string) {
		for _, m := range p.machines {
			p.produce(m, 0, 0) // their run state; their counts go nowhere
		}
		st := ra.a.Status()
		for _, ms := range st.Machines[:2] {
			if strings.Contains(ms.Error, quietNote) {
				t.Fatalf("%s noted: %s", ms.ID, ms.Error)
			}
		}
		ms := st.Machines[2]
		return ms.State == "running" && strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	}
	waitFor(t, 20*time.Second, "press-3 (the default) noted", check)
	for range 10 {
		check()
		time.Sleep(200 * time.Millisecond)
	}
}

// A healthy machine whose counter, sent on change, comes less often than
// the default limit (a piece every 3 s here, the limit 2 s; a big press,
// a piece every 20-40 minutes, against 15): once its usual time between
// values is known, the limit is 3 times that — the note came between
// every two pieces.
func TestQuietCounterLimitLearnedFromASlowCounter(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.countQuiet = 2 * time.Second
	ra := p.startAgent()
	m := p.machines[0]
	const cycle = 3 * time.Second
	for range 4 { // its usual time between values learned (3 steps)
		p.produce(m, 1, 0)
		time.Sleep(cycle)
	}
	end := time.Now().Add(4 * cycle)
	for next := time.Now(); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(next) {
			p.produce(m, 1, 0)
			next = time.Now().Add(cycle)
		}
		if ms := ra.a.Status().Machines[0]; strings.Contains(ms.Error, quietNote) {
			t.Fatalf("a piece every %s noted: %s", cycle, ms.Error)
		}
	}
	// A counter that stops for good is noted all the same, later.
	waitFor(t, 30*time.Second, "the note once its pieces stop coming", func() (bool, string) {
		p.publishStamped("plant/press-1", map[string]any{"running": true}, time.Now()) // its run state alone
		ms := ra.a.Status().Machines[0]
		return strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	})
}

// A quiet_after under a minute (warned of, but taken) is said as it is:
// the note said "no value for 0s of the machine running" with the
// limit at 10 s (operator review, the real binary), the time rounded to
// a minute.
func TestQuietCounterNoteSaysAShortLimitAsItIs(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.editConfig("good_count: { mqtt: { broker: broker, topic: plant/press-1, field: good, timestamp_field: ts } }",
		"good_count: { mqtt: { broker: broker, topic: plant/press-1x, field: good, timestamp_field: ts }, quiet_after: 3s }")
	ra := p.startAgent()
	noted := regexp.MustCompile(`no value for (\S+) of the machine running`)
	var said string
	waitFor(t, 20*time.Second, "press-1 noted", func() (bool, string) {
		p.produce(p.machines[0], 0, 0) // its run state; its counts go nowhere
		ms := ra.a.Status().Machines[0]
		if m := noted.FindStringSubmatch(ms.Error); m != nil {
			said = m[1]
			return true, ""
		}
		return false, ms.State + ": " + ms.Error
	})
	d, err := time.ParseDuration(said)
	if err != nil || d < 3*time.Second || d > 10*time.Second {
		t.Fatalf("the note says no value for %q, want 3s or a little more", said)
	}
}

// A counter's broker that drops the agent more often than the limit (a
// flapping broker: every 5 minutes against 15), a running machine, a
// counter that never sends (its topic mistyped): the watch started anew
// at every connect, and the note never came. What counts is the machine's
// running while the broker is connected, added up across the reconnects;
// a reconnect gives the counter a grace, not a whole new limit. Here the
// broker is up about a quarter of the limit at a time, and the note says
// the connection was lost, as the source's warnings do.
func TestQuietCounterNotedThroughAFlappingBroker(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.countQuiet = 4 * time.Second
	p.editConfig("good_count: { mqtt: { broker: broker, topic: plant/press-1,", "good_count: { mqtt: { broker: broker, topic: plant/press-1x,")
	ra := p.startAgent()
	m := p.machines[0]
	addr := p.broker.Addr()
	drops := 0
	for end := time.Now().Add(40 * time.Second); time.Now().Before(end); drops++ {
		waitFor(t, 20*time.Second, "the broker connected", func() (bool, string) {
			s := ra.a.Status().Sources[0]
			return s.State == "connected", s.State
		})
		for up := time.Now(); time.Since(up) < p.countQuiet/4; time.Sleep(50 * time.Millisecond) {
			p.produce(m, 0, 0) // its run state; its counts go nowhere
			if ms := ra.a.Status().Machines[0]; ms.State == "running" && strings.Contains(ms.Error, quietNote) {
				t.Logf("noted after %d drops of the broker: %s", drops, ms.Error)
				if drops > 0 && !strings.Contains(ms.Error, "while its broker was connected (the connection was lost") {
					t.Errorf("the note does not say the connection was lost: %s", ms.Error)
				}
				return
			}
		}
		p.broker.Close()
		waitFor(t, 10*time.Second, "the broker seen down", func() (bool, string) {
			s := ra.a.Status().Sources[0]
			return s.State != "connected", s.State
		})
		b, err := mqtttest.Start(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		p.broker = b
	}
	t.Fatalf("no note through %d drops of the broker, each after %s connected, the machine running and its counter sending nothing: %q",
		drops, p.countQuiet/4, ra.a.Status().Machines[0].Error)
}

// sourceState is the state status shows for the source named name.
func sourceState(ra *runningAgent, name string) string {
	for _, s := range ra.a.Status().Sources {
		if s.Name == name {
			return s.State
		}
	}
	return "absent"
}

// flapUntilQuiet keeps the link px to source up about a quarter of the
// limit at a time (run feeding machine 0's run state meanwhile) and crashes
// it after each stretch, for at most 40 s: it returns machine 0's note
// once it is noted quiet ("" if never) and how many times the link was
// crashed before.
func flapUntilQuiet(t *testing.T, p *plant, ra *runningAgent, px *nettest.CrashProxy, source string, run func()) (note string, drops int) {
	t.Helper()
	for end := time.Now().Add(40 * time.Second); time.Now().Before(end); drops++ {
		waitFor(t, 20*time.Second, source+" connected", func() (bool, string) {
			st := sourceState(ra, source)
			return st == "connected", st
		})
		for up := time.Now(); time.Since(up) < p.countQuiet/4; time.Sleep(50 * time.Millisecond) {
			run()
			if ms := ra.a.Status().Machines[0]; ms.State == "running" && strings.Contains(ms.Error, quietNote) {
				return ms.Error, drops
			}
		}
		px.Crash()
		waitFor(t, 10*time.Second, source+" seen down", func() (bool, string) {
			st := sourceState(ra, source)
			return st != "connected", st
		})
		px.Restart()
	}
	return "", drops
}

// A counter whose publisher stopped but left a retained message, behind a
// link to the broker that drops more often than the limit: the broker
// hands the agent that same message at every reconnect, which started the
// watch over, and the note never came. A retained message the agent has
// seen as it is (same payload: same value, same time) is no news from the
// machine; one that differs is (the publisher published while the agent
// was away): it is counted, and the note goes.
func TestQuietCounterWithAStaleRetainedValueNotedThroughAFlappingLink(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.countQuiet = 4 * time.Second
	p.editConfig("good_count: { mqtt: { broker: broker, topic: plant/press-1,", "good_count: { mqtt: { broker: broker, topic: plant/press-1/good,")
	px := nettest.NewCrashProxy(t, p.broker.Addr())
	p.editConfig(p.broker.URL(), "tcp://"+px.Addr())
	retain := func(good int64, at time.Time) {
		b, err := json.Marshal(map[string]any{"good": good, "ts": at.UTC().Format(time.RFC3339Nano)})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.broker.Publish("plant/press-1/good", b, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	retain(1000, time.Now()) // the publisher's last message; it stopped
	ra := p.startAgent()
	m := p.machines[0]
	note, drops := flapUntilQuiet(t, p, ra, px, "broker", func() { p.produce(m, 0, 0) }) // its run state; its counts go to plant/press-1, not read
	if note == "" {
		t.Fatalf("no note through %d drops of the link to the broker, each after %s connected, the machine running and its counter's only value a retained message: %q",
			drops, p.countQuiet/4, ra.a.Status().Machines[0].Error)
	}
	t.Logf("noted after %d drops of the link: %s", drops, note)
	if drops > 0 && !strings.Contains(note, "while its broker was connected (the connection was lost") {
		t.Errorf("the note does not say the connection was lost: %s", note)
	}
	if drops > 0 && !strings.Contains(note, "; only the broker's retained copy of its last message came") {
		t.Errorf("the note does not say the retained copy came again: %s", note)
	}
	// The publisher back while the agent is away: its retained message
	// differs, and is news.
	px.Crash()
	waitFor(t, 10*time.Second, "broker seen down", func() (bool, string) {
		st := sourceState(ra, "broker")
		return st != "connected", st
	})
	retain(1005, time.Now())
	px.Restart()
	p.waitExactQty(ra, "press-1", 5)
	waitQuietNoteGone(t, ra)
}

// An OPC UA counter whose node exists but stands (its PLC program stopped
// updating it) while the machine runs, behind a link to the server that
// drops more often than the limit: each session starts with a read of
// the node (and the subscription's first value), which started the watch
// over, and the note never came. A value read again as it was (same
// value; same source time, here none) is no news from the machine; a
// change is, and is counted.
func TestQuietCounterOfAStandingOPCUANodeNotedThroughAFlappingLink(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press"}})
	p.countQuiet = 4 * time.Second
	px := nettest.NewCrashProxy(t, strings.TrimPrefix(p.ua.Endpoint(), "opc.tcp://"))
	p.editConfig(p.ua.Endpoint(), "opc.tcp://"+px.Addr())
	ra := p.startAgent()
	m := p.machines[0]
	note, drops := flapUntilQuiet(t, p, ra, px, "line1", func() {}) // its run state: the node, read at every session
	if note == "" {
		t.Fatalf("no note through %d drops of the link to the server, each after %s connected, the machine running and its counter standing: %q",
			drops, p.countQuiet/4, ra.a.Status().Machines[0].Error)
	}
	t.Logf("noted after %d drops of the link: %s", drops, note)
	if drops > 0 && !strings.Contains(note, "while its server was connected (the session failed") {
		t.Errorf("the note does not say the session failed: %s", note)
	}
	if drops > 0 && !strings.Contains(note, "; its node read ") {
		t.Errorf("the note does not say the node was read again as it was: %s", note)
	}
	p.produce(m, 3, 0)
	p.waitExactQty(ra, "ua-press", 3)
	waitQuietNoteGone(t, ra)
}

// An OPC UA counter read by polling (mode: poll) whose node stands while
// the machine runs, its server connected all along: every poll handed the
// agent the node's value again, which started the watch over, and the
// note never came. A read that finds it as it was is no news.
func TestQuietCounterOfAStandingPolledOPCUANodeNoted(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press"}})
	p.countQuiet = 2 * time.Second
	p.editConfig("    sampling_interval: 50ms\n", "    sampling_interval: 50ms\n    mode: poll\n    poll_interval: 100ms\n")
	ra := p.startAgent()
	waitFor(t, 20*time.Second, "the note, its node read every 100ms and standing", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return ms.State == "running" && strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	})
	t.Logf("noted: %s", ra.a.Status().Machines[0].Error)
	p.produce(p.machines[0], 2, 0)
	p.waitExactQty(ra, "ua-press", 2)
	waitQuietNoteGone(t, ra)
}

// waitQuietNoteGone waits until the first machine's quiet-counter note is
// gone (a value that is news came).
func waitQuietNoteGone(t *testing.T, ra *runningAgent) {
	t.Helper()
	waitFor(t, 10*time.Second, "the note gone", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return !strings.Contains(ms.Error, quietNote), ms.Error
	})
}

// The same, on a server that gives its values no source time but stamps
// each read with its own clock (a server timestamp, as open62541 does),
// which the agent takes as their time: a poll of a node that stands found
// the same value with a new server time each time, which was news, and the
// note never came. A server timestamp says when the value was read, not
// when the machine changed it.
func TestQuietCounterOfAStandingPolledOPCUANodeStampedByItsServerNoted(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-press"}})
	p.countQuiet = 2 * time.Second
	p.ua.StampReads("ua-press.Good")
	p.editConfig("    sampling_interval: 50ms\n", "    sampling_interval: 50ms\n    mode: poll\n    poll_interval: 100ms\n")
	ra := p.startAgent()
	waitFor(t, 20*time.Second, "the note, its node read every 100ms, standing, stamped by its server at each read", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return ms.State == "running" && strings.Contains(ms.Error, quietNote), ms.State + ": " + ms.Error
	})
	t.Logf("noted: %s", ra.a.Status().Machines[0].Error)
	p.produce(p.machines[0], 2, 0)
	p.waitExactQty(ra, "ua-press", 2)
	waitFor(t, 10*time.Second, "the note gone", func() (bool, string) {
		ms := ra.a.Status().Machines[0]
		return !strings.Contains(ms.Error, quietNote), ms.Error
	})
}

// Two machines whose counters are two elements of one OPC UA array node
// with a source time: lane 1 counts, lane 2's element stands while it
// runs. Each change of lane 1 brings the whole array with a new source
// time, lane 2's element at the same value: the array's time is no time
// of lane 2's counter, and its standing element is no news — it is noted,
// and lane 1, counting, is not.
func TestQuietCounterOfAStandingArrayElementNotedWhileItsNeighbourCounts(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"ua-lane-1", "ua-lane-2"}, uaArray: true})
	p.countQuiet = 2 * time.Second
	p.ua.SetAt("Counts", p.uaCounts(), time.Now())
	ra := p.startAgent()
	lane1 := p.machines[0]
	lane := func(id string) (state, note string) {
		for _, m := range ra.a.Status().Machines {
			if m.ID == id {
				return m.State, m.Error
			}
		}
		return "absent", ""
	}
	made := int64(0)
	for end := time.Now().Add(20 * time.Second); ; {
		lane1.mu.Lock()
		lane1.good++
		lane1.mu.Unlock()
		made++
		p.ua.SetAt("Counts", p.uaCounts(), time.Now())
		if st, note := lane("ua-lane-2"); st == "running" && strings.Contains(note, quietNote) {
			t.Logf("lane 2 noted after lane 1 made %d pieces: %s", made, note)
			break
		}
		if time.Now().After(end) {
			st, note := lane("ua-lane-2")
			t.Fatalf("lane 2 not noted in 20 s, its element standing while lane 1 made %d pieces in the same array: %s: %q", made, st, note)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, note := lane("ua-lane-1"); strings.Contains(note, quietNote) {
		t.Errorf("lane 1, counting, noted quiet: %s", note)
	}
	p.waitExactQty(ra, "ua-lane-1", float64(made))
}
