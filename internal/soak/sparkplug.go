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

import (
	"fmt"
	"math/rand/v2"
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
}

func newEdgeNode(url string, devs []*machine, rng *rand.Rand, logf func(string, ...any)) *edgeNode {
	return &edgeNode{url: url, devs: devs, rng: rng, logf: logf}
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
		e.crash("cut its connection (as a gateway losing power): the broker sends its NDEATH")
		return
	}
	if !e.ensure() {
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
	if time.Since(e.lastTry) < 300*time.Millisecond {
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
	e.aliases, e.last = map[string]map[string]uint64{}, map[string]map[string]any{}
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
		sn := d.snapshot()
		vals := spValues(sn)
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
		e.last[d.id] = vals
	}
	e.birthAt.Store(time.Now().UnixNano())
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
