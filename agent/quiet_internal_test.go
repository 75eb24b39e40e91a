package agent

import (
	"hash/maphash"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors"
)

// quietWatch is an agent reduced to its quiet-counter watch: one machine,
// press-1, running from t0 with its run state confirmed, whose good_count
// on broker "b" never brings a value; its limit the default 15 minutes.
type quietWatch struct {
	a   *Agent
	cfg *config.Config
}

func newQuietWatch(t0 time.Time) *quietWatch {
	cfg := &config.Config{Machines: []config.Machine{{ID: "press-1",
		GoodCount: &config.Counter{SourceRef: config.SourceRef{MQTT: &config.MQTTRef{Broker: "b", Topic: "plant/press-1x"}}}}}}
	a := &Agent{state: mapping.NewState(), started: t0,
		countFed: map[string]time.Time{}, runSince: map[string]time.Time{"press-1": t0}, countMapped: map[string]time.Time{},
		runFed: map[string]time.Time{"press-1": t0}, countRan: map[string]time.Duration{}, countNeed: map[string]time.Duration{},
		countLost: map[string]int{}, srcUp: map[string]time.Time{}, shownRunning: map[string]bool{"press-1": true}}
	a.cfg.Store(cfg)
	return &quietWatch{a: a, cfg: cfg}
}

func (w *quietWatch) up(at time.Time)   { w.a.countSourceConnected(connectors.KindMQTT, "b", at) }
func (w *quietWatch) down(at time.Time) { w.a.countSourceDown(connectors.KindMQTT, "b", true, at) }

// noted says whether status would note press-1's counter at at, and for
// how much running.
func (w *quietWatch) noted(at time.Time) (bool, time.Duration) {
	w.a.stateMu.Lock()
	defer w.a.stateMu.Unlock()
	q, ok := w.a.quietCounters(w.cfg, at)["press-1"]
	return ok, q.ran
}

// A broker that drops the agent every 5 minutes (a second's outage), a
// running machine, a counter that never sends: noted, after at most twice
// the limit of running while connected (each reconnect gives a grace of a
// third of the limit, 5 minutes, which the next drop cuts short), and
// noted for good from then on, through the reconnects that follow.
func TestQuietCounterThroughAFlappingSourceOnAStepClock(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	for _, every := range []time.Duration{30 * time.Second, 5 * time.Minute, 7 * time.Minute} {
		w := newQuietWatch(t0)
		w.up(t0)
		var first time.Time
		var firstRan time.Duration
		for now := t0; now.Before(t0.Add(3 * time.Hour)); now = now.Add(time.Second) {
			if n := now.Sub(t0); n > 0 && n%every == 0 {
				w.down(now.Add(-time.Second))
				w.up(now)
			}
			ok, ran := w.noted(now)
			switch {
			case ok && first.IsZero():
				first, firstRan = now, ran
			case !ok && !first.IsZero():
				t.Fatalf("every %s: noted at %s, not at %s (the note went again)", every, first.Sub(t0), now.Sub(t0))
			}
		}
		if first.IsZero() {
			t.Fatalf("every %s: never noted in 3 hours", every)
		}
		if firstRan < countQuietAfter || firstRan > 2*countQuietAfter {
			t.Errorf("every %s: noted at %s of running, want between the limit and twice it", every, firstRan)
		}
		t.Logf("dropped every %s: noted %s after the start, at %s of running while connected", every, first.Sub(t0), firstRan)
	}
}

// A counter silent for 14 minutes of running, its broker down 10 minutes,
// back: the outage is no silence, and the counter gets a third of its limit
// of running from the reconnect to send (a value sent on change during the
// outage is lost), then is noted for what it did not send while
// connected; a stop and a second outage add nothing.
func TestQuietCounterGraceAfterAReconnectOnAStepClock(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	w := newQuietWatch(t0)
	w.up(t0)
	w.down(t0.Add(14 * time.Minute))
	if ok, _ := w.noted(t0.Add(24 * time.Minute)); ok {
		t.Fatal("noted while its broker is down")
	}
	back := t0.Add(24 * time.Minute)
	w.up(back)
	if ok, ran := w.noted(back.Add(time.Second)); ok || ran != 0 {
		t.Fatalf("a second after the reconnect: noted %v", ok)
	}
	if ok, _ := w.noted(back.Add(5*time.Minute - time.Second)); ok {
		t.Fatal("noted within the grace after the reconnect")
	}
	ok, ran := w.noted(back.Add(5 * time.Minute))
	if !ok || ran != 19*time.Minute {
		t.Fatalf("the grace over: noted %v for %s, want noted for 19m (14 + 5, not the outage)", ok, ran)
	}
}

// What is news from the machine for its counter's quiet watch (countNews),
// value after value of one source address: a value handed again as it was
// (a retained message re-delivered, an OPC UA read of a node that stands)
// is not; anything that differs is, and so is any MQTT message not
// retained.
func TestCountNewsIsWhatTheMachineSent(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	mq := func(payload string, retained, dup bool) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: "plant/press-1", Payload: []byte(payload), Good: true, Initial: retained, Duplicate: dup}
	}
	ua := func(v any, typ string, at time.Time) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindOPCUA, Source: "line1", Address: "ns=2;s=Good", Value: v, DataType: typ, SourceTime: at, Good: true}
	}
	uaInitial := func(v any, typ string, at time.Time) connectors.Sample {
		s := ua(v, typ, at)
		s.Initial = true
		return s
	}
	uaStamped := func(v any, at time.Time) connectors.Sample {
		s := ua(v, "Int32", at)
		s.ServerStamped = true
		return s
	}
	uaElement := func(v any, at time.Time) connectors.Sample {
		s := ua(v, "Int64", at)
		s.Address, s.Element = "ns=2;s=Counts[1]", true
		return s
	}
	for _, c := range []struct {
		what string
		s    []connectors.Sample
		news []bool
	}{
		{"MQTT: a retained message first, then again as it was, then changed",
			[]connectors.Sample{mq(`{"good":5,"ts":"a"}`, true, false), mq(`{"good":5,"ts":"a"}`, true, false), mq(`{"good":5,"ts":"a"}`, true, false), mq(`{"good":6,"ts":"b"}`, true, false)},
			[]bool{true, false, false, true}},
		{"MQTT: the same value stamped anew, retained",
			[]connectors.Sample{mq(`{"good":5,"ts":"a"}`, false, false), mq(`{"good":5,"ts":"b"}`, true, false)},
			[]bool{true, true}},
		{"MQTT: a live message, then its retained copy, then a redelivery of it",
			[]connectors.Sample{mq(`{"good":7}`, false, false), mq(`{"good":7}`, true, false), mq(`{"good":7}`, false, true)},
			[]bool{true, false, false}},
		{"MQTT: the same message live again (its publisher is alive)",
			[]connectors.Sample{mq(`{"good":7}`, false, false), mq(`{"good":7}`, false, false)},
			[]bool{true, true}},
		{"OPC UA: no source time, read again at each session, then changed",
			[]connectors.Sample{uaInitial(int64(1000), "Int32", time.Time{}), ua(int64(1000), "Int32", time.Time{}), uaInitial(int64(1000), "Int32", time.Time{}), uaInitial(int64(1001), "Int32", time.Time{})},
			[]bool{true, false, false, true}},
		{"OPC UA: the same source time again, then a new one for the same value, then another type",
			[]connectors.Sample{uaInitial(int64(1000), "Int32", t0), uaInitial(int64(1000), "Int32", t0), ua(int64(1000), "Int32", t0.Add(time.Second)), ua(int64(1000), "Int64", t0.Add(time.Second))},
			[]bool{true, false, true, true}},
		{"OPC UA: no source time, each read stamped anew by the server, then changed",
			[]connectors.Sample{uaStamped(int64(1000), t0), uaStamped(int64(1000), t0.Add(time.Second)), uaStamped(int64(1000), t0.Add(2*time.Second)), uaStamped(int64(1001), t0.Add(3*time.Second))},
			[]bool{true, false, false, true}},
		{"OPC UA: an array's element standing while the array's source time moves, then changed",
			[]connectors.Sample{uaElement(int64(7), t0), uaElement(int64(7), t0.Add(time.Second)), uaElement(int64(7), t0.Add(2*time.Second)), uaElement(int64(8), t0.Add(3*time.Second))},
			[]bool{true, false, false, true}},
	} {
		a := &Agent{countHeard: map[sampleAddr]heard{}, heardSeed: maphash.MakeSeed()}
		for i, s := range c.s {
			if got := a.countNews(sampleAddr{s.Kind, s.Source, s.Address}, s); got != c.news[i] {
				t.Errorf("%s: value %d news %v, want %v", c.what, i+1, got, c.news[i])
			}
		}
	}
}
