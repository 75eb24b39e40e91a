//go:build linux

package main

// The Sparkplug B edge node the soak simulates: one edge node (as an
// Ignition gateway with MQTT Transmission) publishing its devices, the
// soak's Sparkplug machines, to the soak's broker. Like a real one it
// leaves an NDEATH as its will, sends NBIRTH and a DBIRTH per device with
// aliases at each connection (bdSeq one up per connection), DATA by alias
// (now and then by name) with only the metrics that changed, and a
// rebirth with new aliases every 60-120 s (as Ignition does when tags
// change; a BIRTH at a connection does not put them off). Every 3-6
// minutes its connection is cut without a DISCONNECT, as a gateway losing
// power: the broker then sends its will.
//
// It publishes with QoS 1 (a Sparkplug edge node may use 0): the soak
// decides that a change was seen from the broker's acknowledgements.
//
// With store and forward on (-sp-history, as Ignition's MQTT Transmission
// has it by default), a cut is a network outage of 10-45 s rather than a
// moment, and while the edge node cannot publish (cut off, or the broker
// down) it keeps what changed on its devices (counts, scrap, run state),
// each with its time. Once it is connected again and the agent (the
// primary host) is listening, it sends a BIRTH with the current values
// and then the stored values flagged is_historical, oldest first, a few
// to a DDATA; until then new changes go into the store behind the old.
// A device's change it stored counts as seen (the machine may change
// again), as the stored value will be delivered: the soak's check expects
// the stored stops as downtime lines at their stored times. Its devices
// stop more often while it holds stored changes.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/internal/sptest"
)

const (
	spGroup = "Soak"
	spNode  = "soak-edge"
	// The metrics of each device, as named in its BIRTH (slashes and
	// spaces are part of the name, as in Ignition's tag paths).
	spGood    = "Counters/Good Parts"
	spScrap   = "Counters/Scrap Parts"
	spRunning = "State/Running"
)

var spMetrics = []string{spGood, spScrap, spRunning}

// spTopic is a device's topic of type typ (DBIRTH, DDATA), or the edge
// node's own (NBIRTH, NDEATH) when dev is "".
func spTopic(typ, dev string) string {
	if dev == "" {
		return fmt.Sprintf("spBv1.0/%s/%s/%s", spGroup, typ, spNode)
	}
	return fmt.Sprintf("spBv1.0/%s/%s/%s/%s", spGroup, typ, spNode, dev)
}

type edgeNode struct {
	url  string
	devs []*machine
	logf func(string, ...any)

	mu        sync.Mutex
	rng       *rand.Rand
	c         *mqtttest.Client
	lastTry   time.Time
	bdSeq     uint64 // of the current (or last) connection
	connected bool   // a connection was ever made: the next one is bdSeq+1
	seq       uint64 // of the next message
	aliasBase uint64
	aliases   map[string]map[string]uint64 // device -> metric -> alias
	last      map[string]map[string]any    // device -> metric -> value last sent
	nextBirth time.Time
	nextCrash time.Time

	// Store and forward (history on): what changed while the edge node
	// could not publish, oldest first; hostReady says whether the agent
	// surely listens (the soak's monitor); offlineUntil ends a network
	// outage; justBorn is set by a BIRTH until the next DATA.
	history      bool
	hostReady    func() bool
	onFlush      func(values int)
	store        []storedChange
	offlineUntil time.Time
	justBorn     bool
	bornHeard    bool // the agent listened at the last BIRTH

	birthAt  atomic.Int64 // UnixNano of the last complete BIRTH acknowledged; 0 while disconnected
	sessions atomic.Int64
	births   atomic.Int64 // complete BIRTH sets sent, at connections and rebirths
	byName   atomic.Int64 // DATA messages that named their metrics
	byAlias  atomic.Int64
	crashes  atomic.Int64
	// asked is set by a rebirth request (NCMD Node Control/Rebirth) from
	// the agent (its config B has sparkplug_rebirth on): the next publish
	// rebirths. requests counts them.
	asked    atomic.Bool
	requests atomic.Int64

	// storing is set while the edge node holds stored changes (its
	// devices stop more often then, so that stored stops are common).
	storing      atomic.Bool
	storedValues atomic.Int64 // metric values stored while cut off
	storedStops  atomic.Int64 // of them, run states false (a stop began)
	storedRuns   atomic.Int64 // run states true (a stop ended)
	histMessages atomic.Int64 // DDATA messages of stored values sent
	histValues   atomic.Int64 // stored values sent
	histStops    atomic.Int64 // stored run states false sent
	histRuns     atomic.Int64
	flushes      atomic.Int64 // BIRTHs followed by stored values
	storeDropped atomic.Int64 // changes not stored: no BIRTH yet
}

// storedChange is what changed on a device at one time while the edge
// node could not publish.
type storedChange struct {
	dev  *machine
	ts   time.Time
	vals map[string]any // the metrics that changed
}

func newEdgeNode(url string, devs []*machine, rng *rand.Rand, logf func(string, ...any)) *edgeNode {
	return &edgeNode{url: url, devs: devs, rng: rng, logf: logf, last: map[string]map[string]any{}}
}

// pending is how many stored changes wait to be sent.
func (e *edgeNode) pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.store)
}

// keep stores m's changes while the edge node cannot publish (or holds
// older ones); a change of the run state counts as seen.
func (e *edgeNode) keep(m *machine) {
	if !e.history {
		return
	}
	last := e.last[m.id]
	if last == nil {
		e.storeDropped.Add(1)
		return
	}
	sn := m.snapshot()
	vals := spValues(sn)
	ch := map[string]any{}
	for _, name := range spMetrics {
		if last[name] != vals[name] {
			ch[name] = vals[name]
			last[name] = vals[name]
		}
	}
	if len(ch) == 0 {
		return
	}
	e.store = append(e.store, storedChange{dev: m, ts: sn.ts, vals: ch})
	e.storing.Store(true)
	e.storedValues.Add(int64(len(ch)))
	r, ok := ch[spRunning]
	if !ok {
		return
	}
	// The millisecond the agent is given, as it is sent.
	ts := time.UnixMilli(sn.ts.UnixMilli())
	m.mu.Lock()
	m.confirmed = true
	if n := len(m.spStops); n > 0 {
		st := &m.spStops[n-1]
		if r == false && st.end.IsZero() {
			st.start, st.startStored = ts, true
		} else if r == true && !st.end.IsZero() {
			st.end, st.endStored = ts, true
		}
	}
	m.mu.Unlock()
	if r == false {
		e.storedStops.Add(1)
	} else {
		e.storedRuns.Add(1)
	}
}

// flush sends the stored changes after a BIRTH, device by device, oldest
// first, 1-8 changes to a DDATA, by alias, flagged is_historical with
// their own times. What was sent is dropped from the store; on a publish
// not acknowledged the rest waits for the next connection.
func (e *edgeNode) flush() bool {
	var stops, runs, values, msgs int
	var sent []storedChange
	defer func() {
		if len(sent) == 0 {
			return
		}
		rest := e.store[:0:0]
		for _, c := range e.store {
			if !slices.ContainsFunc(sent, func(s storedChange) bool { return s.dev == c.dev && s.ts.Equal(c.ts) }) {
				rest = append(rest, c)
			}
		}
		e.store = rest
		e.storing.Store(len(rest) > 0)
		e.flushes.Add(1)
		e.logf("sparkplug edge node bdSeq %d: sent %d stored values (%d stops, %d runs) in %d DDATA, flagged is_historical; %d left", e.bdSeq, values, stops, runs, msgs, len(rest))
		if e.onFlush != nil {
			e.onFlush(values)
		}
	}()
	for _, d := range e.devs {
		var chs []storedChange
		for _, c := range e.store {
			if c.dev == d {
				chs = append(chs, c)
			}
		}
		for len(chs) > 0 {
			k := min(len(chs), 1+e.rng.IntN(8))
			var ms []sptest.Metric
			for _, c := range chs[:k] {
				for _, name := range spMetrics {
					if v, ok := c.vals[name]; ok {
						ms = append(ms, sptest.Metric{Alias: e.aliases[d.id][name], HasAlias: true, Value: v,
							Timestamp: uint64(c.ts.UnixMilli()), Historical: true})
					}
				}
			}
			if !e.send(spTopic("DDATA", d.id), sptest.Payload{Timestamp: uint64(time.Now().UnixMilli()), Metrics: ms}) {
				return false
			}
			msgs++
			e.histMessages.Add(1)
			for _, c := range chs[:k] {
				sent = append(sent, c)
				values += len(c.vals)
				if r, ok := c.vals[spRunning]; ok {
					c.dev.mu.Lock()
					for i := range c.dev.spStops {
						st := &c.dev.spStops[i]
						if r == false && st.startStored && st.start.UnixMilli() == c.ts.UnixMilli() {
							st.startFlushed = true
						}
						if r == true && st.endStored && st.end.UnixMilli() == c.ts.UnixMilli() {
							st.endFlushed = true
						}
					}
					c.dev.mu.Unlock()
					if r == false {
						stops++
						e.histStops.Add(1)
					} else {
						runs++
						e.histRuns.Add(1)
					}
				}
			}
			e.histValues.Add(int64(func() int {
				n := 0
				for _, c := range chs[:k] {
					n += len(c.vals)
				}
				return n
			}()))
			chs = chs[k:]
		}
	}
	return true
}

// session is the bdSeq of the current (or last) connection.
func (e *edgeNode) session() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bdSeq
}

// readySince is when the edge node's last complete BIRTH was acknowledged
// by the broker (zero while it is disconnected).
func (e *edgeNode) readySince() time.Time {
	if n := e.birthAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// publish sends m's changed metrics in a DDATA, after connecting and
// sending the BIRTHs if needed, or a rebirth when one is due. m's values
// are read here, under mu: a snapshot taken before a BIRTH of newer values
// would send a counter backwards.
func (e *edgeNode) publish(m *machine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.c != nil && now.After(e.nextCrash) {
		e.crashes.Add(1)
		e.nextCrash = now.Add(time.Duration(180+e.rng.IntN(181)) * time.Second)
		if e.history {
			out := time.Duration(10+e.rng.IntN(36)) * time.Second
			e.offlineUntil = now.Add(out)
			e.crash(fmt.Sprintf("cut off from the broker for %v (its network down): the broker sends its NDEATH; it stores its devices' changes", out))
		} else {
			e.crash("cut its connection (as a gateway losing power): the broker sends its NDEATH")
		}
		e.keep(m)
		return
	}
	if !e.ensure() {
		e.keep(m)
		return
	}
	if e.asked.Swap(false) {
		if !e.birth("asked") {
			return
		}
	} else if now.After(e.nextBirth) {
		if !e.birth("rebirth") {
			return
		}
	}
	if len(e.store) > 0 {
		// Ignition's store keeps the order: while it holds anything, new
		// changes go in behind. It sends them once the primary host (the
		// agent) is online, after a BIRTH it heard.
		if !e.hostReady() {
			e.keep(m)
			return
		}
		if !(e.justBorn && e.bornHeard) && !e.birth("store and forward") {
			return
		}
		if !e.flush() {
			return
		}
	}
	sn := m.snapshot()
	vals := spValues(sn)
	byName := e.rng.IntN(10) == 0
	var ms []sptest.Metric
	for _, name := range spMetrics {
		v := vals[name]
		if e.last[m.id][name] == v {
			continue
		}
		mt := sptest.Metric{Value: v, Timestamp: uint64(sn.ts.UnixMilli())}
		if byName {
			mt.Name, mt.Datatype = name, spType(name)
		} else {
			mt.Alias, mt.HasAlias = e.aliases[m.id][name], true
		}
		ms = append(ms, mt)
	}
	if len(ms) == 0 {
		return
	}
	if !e.send(spTopic("DDATA", m.id), sptest.Payload{Timestamp: uint64(sn.ts.UnixMilli()), Metrics: ms}) {
		return
	}
	e.justBorn = false
	if byName {
		e.byName.Add(1)
	} else {
		e.byAlias.Add(1)
	}
	for _, name := range spMetrics {
		e.last[m.id][name] = vals[name]
	}
}

func spValues(sn snap) map[string]any {
	return map[string]any{spGood: sn.good, spScrap: sn.scrap, spRunning: sn.running}
}

func spType(name string) uint32 {
	if name == spRunning {
		return sptest.Boolean
	}
	return sptest.UInt32
}

// send publishes one message with the next seq (none for an NDEATH) and
// cuts the connection when the broker did not acknowledge it: the next
// connection starts with BIRTHs, as the agent's alias map would not follow
// on over a lost message.
func (e *edgeNode) send(topic string, p sptest.Payload) bool {
	p.Seq = int(e.seq)
	e.seq = (e.seq + 1) % 256
	err := e.c.Publish(topic, 1, false, p.Encode(), 2*time.Second)
	if err == nil {
		return true
	}
	e.crash(fmt.Sprintf("publish %s not acknowledged (%v): reconnecting", topic, err))
	return false
}

// crash drops the connection without a DISCONNECT.
func (e *edgeNode) crash(why string) {
	e.birthAt.Store(0)
	if e.c != nil {
		e.c.Cut() // no DISCONNECT: the broker sends the NDEATH
	}
	e.c = nil
	e.logf("sparkplug edge node bdSeq %d: %s", e.bdSeq, why)
}

// ensure connects (at most every 300 ms) with a new bdSeq and sends the
// BIRTHs; it reports whether the edge node is connected.
func (e *edgeNode) ensure() bool {
	if e.c != nil && e.c.Connected() {
		return true
	}
	if e.c != nil {
		e.crash("connection lost")
	}
	if time.Since(e.lastTry) < 300*time.Millisecond || time.Now().Before(e.offlineUntil) {
		return false
	}
	e.lastTry = time.Now()
	bd := e.bdSeq
	if e.connected {
		bd = (bd + 1) % 256
	}
	will := sptest.Payload{Timestamp: uint64(time.Now().UnixMilli()), Seq: -1,
		Metrics: []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(bd)}}}
	c, err := mqtttest.Dial(e.url, "soak-"+spNode, &mqtttest.Will{Topic: spTopic("NDEATH", ""), Payload: will.Encode(), QoS: 1}, 2*time.Second)
	if err != nil {
		return false
	}
	e.c, e.bdSeq, e.connected = c, bd, true
	// Rebirth requests: an NCMD asks for one; any NCMD will do here (the
	// agent's payload is checked by the agent's own tests).
	_ = c.Subscribe(spTopic("NCMD", ""), 0, func(string, []byte) {
		e.requests.Add(1)
		e.asked.Store(true)
	})
	e.sessions.Add(1)
	if e.nextCrash.IsZero() {
		e.nextCrash = time.Now().Add(time.Duration(180+e.rng.IntN(181)) * time.Second)
	}
	return e.birth("connected")
}

// birth sends NBIRTH (seq 0, the connection's bdSeq) and a DBIRTH per
// device, with new aliases, and schedules the next rebirth.
func (e *edgeNode) birth(why string) bool {
	e.birthAt.Store(0)
	e.seq = 0
	// New aliases, in another order: an agent reading DATA with an old map
	// would book one metric's value as another's (good as scrap).
	e.aliasBase += 100
	e.aliases = map[string]map[string]uint64{}
	e.justBorn = false
	e.bornHeard = e.hostReady != nil && e.hostReady()
	now := time.Now()
	ts := uint64(now.UnixMilli())
	if !e.send(spTopic("NBIRTH", ""), sptest.Payload{Timestamp: ts, Metrics: []sptest.Metric{
		{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(e.bdSeq)},
		{Name: "Node Control/Rebirth", Alias: e.aliasBase, HasAlias: true, Datatype: sptest.Boolean, Value: false},
	}}) {
		return false
	}
	for i, d := range e.devs {
		perm := e.rng.Perm(len(spMetrics))
		e.aliases[d.id] = map[string]uint64{}
		if len(e.store) > 0 {
			// What changed since the device's last stored change goes in
			// behind it, not only into the BIRTH: a run that came just
			// before would else be lost to the history (the agent books
			// nothing for a stored stop without its run).
			e.keep(d)
		}
		sn := d.snapshot()
		vals := spValues(sn)
		if !sn.running {
			d.mu.Lock()
			if n := len(d.spStops); n > 0 && d.spStops[n-1].startStored && d.spStops[n-1].end.IsZero() {
				d.spStops[n-1].births = append(d.spStops[n-1].births, sn.ts)
			}
			d.mu.Unlock()
		}
		var ms []sptest.Metric
		for j, name := range spMetrics {
			a := e.aliasBase + uint64(10*(i+1)+perm[j])
			e.aliases[d.id][name] = a
			ms = append(ms, sptest.Metric{Name: name, Alias: a, HasAlias: true, Datatype: spType(name), Value: vals[name],
				Timestamp: uint64(sn.ts.UnixMilli())})
		}
		if !e.send(spTopic("DBIRTH", d.id), sptest.Payload{Timestamp: uint64(sn.ts.UnixMilli()), Metrics: ms}) {
			return false
		}
		d.mu.Lock()
		d.dbirths = append(d.dbirths, time.UnixMilli(sn.ts.UnixMilli()))
		d.mu.Unlock()
		e.last[d.id] = vals
	}
	e.birthAt.Store(time.Now().UnixNano())
	e.justBorn = true
	n := e.births.Add(1)
	switch {
	case n == 1:
		// The first rebirth soon: the agent may have subscribed after this
		// BIRTH, and it needs one for its baselines.
		e.nextBirth = now.Add(10 * time.Second)
	case why == "rebirth":
		// Rebirths come as tags change, whenever the edge node connected:
		// a BIRTH at each connection does not put them off (the broker
		// restarts more often than they come).
		e.nextBirth = now.Add(time.Duration(60+e.rng.IntN(61)) * time.Second)
	}
	e.logf("sparkplug edge node bdSeq %d: BIRTH #%d (%s), aliases from %d", e.bdSeq, n, why, e.aliasBase)
	return true
}

// close disconnects cleanly, as an edge node shut down: it sends its
// NDEATH itself first.
func (e *edgeNode) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c == nil {
		return
	}
	if e.c.Connected() {
		p := sptest.Payload{Timestamp: uint64(time.Now().UnixMilli()), Seq: -1,
			Metrics: []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(e.bdSeq)}}}
		_ = e.c.Publish(spTopic("NDEATH", ""), 1, false, p.Encode(), time.Second)
	}
	e.c.Close(100)
	e.c = nil
	e.birthAt.Store(0)
}
