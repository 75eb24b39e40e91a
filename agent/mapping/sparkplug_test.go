package mapping

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

const spConfig = mqttHead + `  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Good } }
    scrap_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Scrap Total } }
    running: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State/Running } }
  - id: p2
    workcenter: WC2
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/NDATA/edge1, field: Good } }
`

var spT0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func spSample(topic string, p sptest.Payload, at time.Time) connectors.Sample {
	return connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: topic, Good: true, ReceiveTime: at, Payload: p.Encode()}
}

func ms(t time.Time) uint64 { return uint64(t.UnixMilli()) }

func spCount(evs []Event, machine string, sig Signal) float64 {
	var n float64
	for _, e := range evs {
		if e.Kind == EventCount && e.Machine == machine && e.Signal == sig {
			n += e.Delta
		}
	}
	return n
}

func TestSparkplugSubscribesToTheEdgeNode(t *testing.T) {
	m := newTestMapper(t, spConfig)
	if got := m.MQTTTopics("b"); !slices.Equal(got, []string{"spBv1.0/plant/+/edge1/#"}) {
		t.Errorf("MQTTTopics = %v, want the edge node's filter once", got)
	}
	for _, topic := range []string{"spBv1.0/plant/DBIRTH/edge1/press1", "spBv1.0/plant/NDEATH/edge1", "spBv1.0/plant/DDATA/edge1/other", "spBv1.0/plant/+/edge1/#"} {
		if !m.Maps(connectors.KindMQTT, "b", topic) {
			t.Errorf("Maps(%s) = false", topic)
		}
	}
	if m.Maps(connectors.KindMQTT, "b", "spBv1.0/plant/DDATA/edge2/press1") {
		t.Error("Maps: another edge node's topic is mapped")
	}
	uses := func(topic string) (out []string) {
		m.EachUse(connectors.KindMQTT, "b", topic, func(machine string, sig Signal) { out = append(out, machine+" "+string(sig)) })
		slices.Sort(out)
		return out
	}
	for topic, want := range map[string][]string{
		// A BIRTH feeds what its DATA feeds (its values are taken).
		"spBv1.0/plant/DBIRTH/edge1/press1": {"p1 good_count", "p1 running", "p1 scrap_count"},
		"spBv1.0/plant/NBIRTH/edge1":        {"p2 good_count"},
		// The filter (a refused subscription) feeds the node's signals.
		"spBv1.0/plant/+/edge1/#":           {"p1 good_count", "p1 running", "p1 scrap_count", "p2 good_count"},
		"spBv1.0/plant/DDEATH/edge1/press1": nil,
		"spBv1.0/plant/DDATA/edge1/other":   nil,
	} {
		if got := uses(topic); !slices.Equal(got, want) {
			t.Errorf("EachUse(%s) = %v, want %v", topic, got, want)
		}
	}
}

// A counter by name in DDATA, then by alias after a DBIRTH; the BIRTH's
// value (a rebirth's too) is a current value, not new pieces.
func TestSparkplugCounterByNameAliasAndRebirth(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data := "spBv1.0/plant/DDATA/edge1/press1"
	birth := "spBv1.0/plant/DBIRTH/edge1/press1"
	apply := func(topic string, p sptest.Payload, at time.Time) []Event {
		t.Helper()
		evs, _, err := m.Apply(st, spSample(topic, p, at))
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return evs
	}
	apply(data, sptest.Payload{Timestamp: ms(spT0), Seq: 1, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.UInt32, Value: int64(100)}}}, spT0)
	evs := apply(data, sptest.Payload{Timestamp: ms(spT0.Add(time.Second)), Seq: 2, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.UInt32, Value: int64(105)}}}, spT0.Add(time.Second))
	if got := spCount(evs, "p1", GoodCount); got != 5 {
		t.Fatalf("by name: %v pieces, want 5", got)
	}
	bp := sptest.Payload{Timestamp: ms(spT0.Add(2 * time.Second)), Seq: 3, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(105)},
		{Name: "Counters/Scrap Total", Alias: 8, HasAlias: true, Datatype: sptest.Int32, Value: int64(2)},
	}}
	apply(birth, bp, spT0.Add(2*time.Second))
	evs = apply(data, sptest.Payload{Timestamp: ms(spT0.Add(3 * time.Second)), Seq: 4, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(110)}}}, spT0.Add(3*time.Second))
	if got := spCount(evs, "p1", GoodCount); got != 5 {
		t.Fatalf("by alias: %v pieces, want 5", got)
	}
	// A rebirth (the edge node reconnected) sends the current value again.
	bp.Seq, bp.Timestamp = 0, ms(spT0.Add(4*time.Second))
	bp.Metrics[0].Value = int64(110)
	if evs := apply(birth, bp, spT0.Add(4*time.Second)); spCount(evs, "p1", GoodCount) != 0 {
		t.Fatalf("rebirth counted: %+v", evs)
	}
	evs = apply(data, sptest.Payload{Timestamp: ms(spT0.Add(5 * time.Second)), Seq: 1, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(111)}}}, spT0.Add(5*time.Second))
	if got := spCount(evs, "p1", GoodCount); got != 1 {
		t.Fatalf("after rebirth: %v pieces, want 1", got)
	}
	// A rebirth before the gateway read its PLC: a 0 it holds for the
	// tag is no reset of the counter (the next DATA's pieces count once).
	bp.Seq, bp.Timestamp = 0, ms(spT0.Add(6*time.Second))
	bp.Metrics[0].Value = int64(0)
	if evs := apply(birth, bp, spT0.Add(6*time.Second)); len(evs) != 0 {
		t.Fatalf("a rebirth with 0 read as a reset: %+v", evs)
	}
	evs = apply(data, sptest.Payload{Timestamp: ms(spT0.Add(7 * time.Second)), Seq: 1, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(113)}}}, spT0.Add(7*time.Second))
	if got := spCount(evs, "p1", GoodCount); got != 2 {
		t.Fatalf("after a rebirth with 0: %v pieces, want 2", got)
	}
}

// Signed types are sent as two's complement in the unsigned fields.
func TestSparkplugSignedValues(t *testing.T) {
	for _, c := range []struct {
		dt   uint32
		v    int64
		want any
	}{
		{sptest.Int8, -5, int8(-5)}, {sptest.Int16, -300, int16(-300)}, {sptest.Int32, -70000, int32(-70000)},
		{sptest.Int64, -1 << 40, int64(-1 << 40)}, {sptest.UInt32, 4000000000, uint32(4000000000)},
	} {
		p, err := decodeSparkplug(sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Name: "x", Datatype: c.dt, Value: c.v}}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.metrics[0].value(p.metrics[0].datatype)
		if err != nil || got != c.want {
			t.Errorf("datatype %d %d: %v (%T), %v; want %v", c.dt, c.v, got, got, err, c.want)
		}
	}
	// An Int64 carried in int_value (32 bits; some small encoders send
	// it so), plain or sign-extended to 64 bits on the wire.
	for _, u := range []uint64{0xFFFFFFFD, math.MaxUint64 - 2} {
		mt := spMetric{vField: 10, u: u}
		if got, err := mt.value(spInt64); got != int64(-3) || err != nil {
			t.Errorf("Int64 in int_value %#x: %v (%T), %v; want -3", u, got, got, err)
		}
	}
	// A negative Int32 counter with rollover is read as its unsigned value.
	m := newTestMapper(t, mqttHead+`  - id: p1
    workcenter: WC1
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/g/DDATA/e/d, field: n }, rollover: 4294967296 }
`)
	st := NewState()
	for i, v := range []int64{-10, -7} {
		evs, _, err := m.Apply(st, spSample("spBv1.0/g/DDATA/e/d", sptest.Payload{Seq: i, Metrics: []sptest.Metric{{Name: "n", Datatype: sptest.Int32, Value: v}}}, spT0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if got := spCount(evs, "p1", GoodCount); got != 3 {
				t.Fatalf("-10 -> -7: %v pieces, want 3", got)
			}
			if raw := st.Machines["p1"].Counters[GoodCount].Last; raw != 4294967296-7 {
				t.Errorf("raw %v, want 2^32-7", raw)
			}
		}
	}
}

func TestSparkplugNullAndRefusedValues(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data := "spBv1.0/plant/DDATA/edge1/press1"
	if _, _, err := m.Apply(st, spSample(data, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.UInt32, Value: int64(10)}}}, spT0)); err != nil {
		t.Fatal(err)
	}
	evs, _, err := m.Apply(st, spSample(data, sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.UInt32, IsNull: true}}}, spT0.Add(time.Second)))
	if err != nil || len(evs) != 0 {
		t.Fatalf("is_null: %v %v", evs, err)
	}
	if got := st.Machines["p1"].Counters[GoodCount].Last; got != 10 {
		t.Fatalf("is_null changed the counter: %v", got)
	}
	_, _, err = m.Apply(st, spSample(data, sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.DataSet, Dataset: true}}}, spT0.Add(2*time.Second)))
	var pe *PayloadError
	if !errors.As(err, &pe) || !errors.Is(err, ErrBadValue) || pe.Field != "Counters/Good" {
		t.Fatalf("dataset: %v", err)
	}
}

func TestSparkplugMalformedAndUnknownAlias(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data := "spBv1.0/plant/DDATA/edge1/press1"
	s := spSample(data, sptest.Payload{}, spT0)
	s.Payload = []byte{0x12, 0x05, 0x0a} // metrics: length 5, 1 byte there
	_, _, err := m.Apply(st, s)
	var pe *PayloadError
	if !errors.As(err, &pe) || !errors.Is(err, ErrBadSparkplug) {
		t.Fatalf("malformed: %v", err)
	}
	s.Payload = []byte(`{"good": 5}`)
	if _, _, err := m.Apply(st, s); !errors.Is(err, ErrBadSparkplug) {
		t.Fatalf("JSON on a Sparkplug topic: %v", err)
	}
	evs, _, err := m.Apply(st, spSample(data, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Alias: 9, HasAlias: true, Value: int64(3)}}}, spT0))
	if err != nil || len(evs) != 0 {
		t.Fatalf("unknown alias: %v %v", evs, err)
	}
	notes := st.TakeSparkplugNotes()
	if len(notes) != 1 || notes[0].Kind != "alias" {
		t.Fatalf("notes %+v", notes)
	}
	// A device no signal reads: its malformed payload is not the
	// machines' (the edge node's filter brings every device).
	s.Address, s.Payload = "spBv1.0/plant/DDATA/edge1/other", []byte(`{"good": 5}`)
	if _, _, err := m.Apply(st, s); err != nil {
		t.Fatalf("an unread device's payload: %v", err)
	}
}

func TestSparkplugSeqGap(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	for _, c := range []struct {
		topic string
		seq   int
	}{
		{"spBv1.0/plant/NBIRTH/edge1", 0}, {"spBv1.0/plant/DBIRTH/edge1/press1", 1},
		{"spBv1.0/plant/DDATA/edge1/other", 2}, {"spBv1.0/plant/NDATA/edge1", 3},
		{"spBv1.0/plant/DDATA/edge1/press1", 5}, // 4 lost
	} {
		if _, _, err := m.Apply(st, spSample(c.topic, sptest.Payload{Seq: c.seq}, spT0)); err != nil {
			t.Fatal(err)
		}
	}
	notes := st.TakeSparkplugNotes()
	if len(notes) != 1 || notes[0].Kind != "seq" {
		t.Fatalf("notes %+v, want one seq gap", notes)
	}
	// 255 -> 0 is no gap.
	for _, seq := range []int{255, 0} {
		st.Sparkplug.nodes["b\x00plant/edge1"].seq = 254
		if seq == 0 {
			st.Sparkplug.nodes["b\x00plant/edge1"].seq = 255
		}
		m.Apply(st, spSample("spBv1.0/plant/NDATA/edge1", sptest.Payload{Seq: seq}, spT0))
	}
	if notes := st.TakeSparkplugNotes(); len(notes) != 0 {
		t.Fatalf("wrap: %+v", notes)
	}
}

func TestSparkplugDeath(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	run := func(topic string, v bool) {
		t.Helper()
		if _, _, err := m.Apply(st, spSample(topic, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "State/Running", Datatype: sptest.Boolean, Value: v}}}, spT0)); err != nil {
			t.Fatal(err)
		}
	}
	run("spBv1.0/plant/DDATA/edge1/press1", true)
	if got := m.SparkplugDown(st, "p1"); got != "" {
		t.Fatalf("alive: %q", got)
	}
	m.Apply(st, spSample("spBv1.0/plant/DDEATH/edge1/press1", sptest.Payload{Seq: 2}, spT0))
	if got := m.SparkplugDown(st, "p1"); got == "" {
		t.Fatal("DDEATH: not down")
	}
	run("spBv1.0/plant/DBIRTH/edge1/press1", true)
	if got := m.SparkplugDown(st, "p1"); got != "" {
		t.Fatalf("after DBIRTH: %q", got)
	}
	bd := func(v int64) []sptest.Metric {
		return []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: v}}
	}
	m.Apply(st, spSample("spBv1.0/plant/NBIRTH/edge1", sptest.Payload{Seq: 0, Metrics: bd(4)}, spT0))
	// The will of the session before (bdSeq 3), delivered late.
	m.Apply(st, spSample("spBv1.0/plant/NDEATH/edge1", sptest.Payload{Seq: -1, Metrics: bd(3)}, spT0))
	if got := m.SparkplugDown(st, "p1"); got != "" {
		t.Fatalf("an earlier session's NDEATH: %q", got)
	}
	m.Apply(st, spSample("spBv1.0/plant/NDEATH/edge1", sptest.Payload{Seq: -1, Metrics: bd(4)}, spT0))
	if got := m.SparkplugDown(st, "p1"); got == "" {
		t.Fatal("NDEATH: not down")
	}
}

// An alias map is read only while known current: from a BIRTH in the
// agent's current connection, with the edge node's seq continuous since.
// Here the agent reconnects and the edge node re-aliased meanwhile (7 was
// good, now scrap): the DATA by alias is skipped, not credited to the
// wrong counter, and said; the next BIRTH counts what was made, once.
func TestSparkplugStaleAliasesNotRead(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data, birth := "spBv1.0/plant/DDATA/edge1/press1", "spBv1.0/plant/DBIRTH/edge1/press1"
	apply := func(topic string, conn uint64, p sptest.Payload, min int) []Event {
		t.Helper()
		s := spSample(topic, p, spT0.Add(time.Duration(min)*time.Minute))
		s.Conn = conn
		evs, _, err := m.Apply(st, s)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return evs
	}
	good := func(alias, v int64) sptest.Metric {
		return sptest.Metric{Name: "Counters/Good", Alias: uint64(alias), HasAlias: true, Datatype: sptest.UInt32, Value: v}
	}
	scrap := func(alias, v int64) sptest.Metric {
		return sptest.Metric{Name: "Counters/Scrap Total", Alias: uint64(alias), HasAlias: true, Datatype: sptest.UInt32, Value: v}
	}
	byAlias := func(alias, v int64) sptest.Metric {
		return sptest.Metric{Alias: uint64(alias), HasAlias: true, Value: v}
	}
	apply(birth, 1, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{good(7, 5000), scrap(8, 12)}}, 0)
	if evs := apply(data, 1, sptest.Payload{Seq: 2, Metrics: []sptest.Metric{byAlias(7, 5010)}}, 1); spCount(evs, "p1", GoodCount) != 10 {
		t.Fatalf("current map: %+v", evs)
	}
	st.TakeSparkplugNotes()
	// The agent reconnected (connection 2); the edge node re-aliased.
	evs := apply(data, 2, sptest.Payload{Seq: 5, Metrics: []sptest.Metric{byAlias(7, 13), byAlias(8, 5400)}}, 60)
	if len(evs) != 0 {
		t.Fatalf("DATA by alias after a reconnect read with the old map: %+v", evs)
	}
	notes := st.TakeSparkplugNotes()
	if len(notes) != 2 || notes[0].Kind != "alias" || !strings.Contains(notes[0].Msg, "rebirth") {
		t.Fatalf("notes %+v, want the two aliases said, with how to get a BIRTH", notes)
	}
	if w := st.SparkplugWaiting(); len(w) != 1 || w[0].Topic != data || w[0].Birth != birth {
		t.Fatalf("waiting %+v", w)
	}
	// Its BIRTH, with the new aliases: what was made meanwhile counts once.
	evs = apply(birth, 2, sptest.Payload{Seq: 6, Metrics: []sptest.Metric{scrap(7, 13), good(8, 5400)}}, 61)
	if g, s := spCount(evs, "p1", GoodCount), spCount(evs, "p1", ScrapCount); g != 390 || s != 1 {
		t.Fatalf("after the BIRTH: good %v scrap %v, want 390 and 1", g, s)
	}
	if w := st.SparkplugWaiting(); len(w) != 0 {
		t.Fatalf("still waiting after the BIRTH: %+v", w)
	}
	if evs := apply(data, 2, sptest.Payload{Seq: 7, Metrics: []sptest.Metric{byAlias(8, 5402)}}, 62); spCount(evs, "p1", GoodCount) != 2 {
		t.Fatalf("new map: %+v", evs)
	}
	// A seq gap: the BIRTH may have been among the lost messages.
	if evs := apply(data, 2, sptest.Payload{Seq: 20, Metrics: []sptest.Metric{byAlias(8, 5410)}}, 63); len(evs) != 0 {
		t.Fatalf("DATA by alias after a seq gap read: %+v", evs)
	}
	// By name it is read, and counts what the skipped one held.
	if evs := apply(data, 2, sptest.Payload{Seq: 21, Metrics: []sptest.Metric{{Name: "Counters/Good", Value: int64(5411)}}}, 64); spCount(evs, "p1", GoodCount) != 9 {
		t.Fatalf("by name after the gap: %+v", evs)
	}
	// An NDEATH: the node re-aliases at its next BIRTH.
	apply(birth, 2, sptest.Payload{Seq: 22, Metrics: []sptest.Metric{good(8, 5411)}}, 65)
	apply("spBv1.0/plant/NDEATH/edge1", 2, sptest.Payload{Seq: -1, Metrics: []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(1)}}}, 66)
	if evs := apply(data, 2, sptest.Payload{Seq: 23, Metrics: []sptest.Metric{byAlias(8, 5420)}}, 67); len(evs) != 0 {
		t.Fatalf("DATA by alias after an NDEATH read: %+v", evs)
	}
}

// At agent start nothing is known: a DATA by alias waits for a BIRTH. A
// retained BIRTH is a BIRTH; a retained DATA (older than any map, maybe)
// is not read by alias.
func TestSparkplugAliasesAtStartAndRetained(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data, birth := "spBv1.0/plant/DDATA/edge1/press1", "spBv1.0/plant/DBIRTH/edge1/press1"
	s := spSample(data, sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(50)}}}, spT0)
	if evs, _, _ := m.Apply(st, s); len(evs) != 0 || len(st.SparkplugWaiting()) != 1 {
		t.Fatalf("DATA by alias with no BIRTH: %+v", evs)
	}
	rb := spSample(birth, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(50)}}}, spT0)
	rb.Initial = true
	m.Apply(st, rb)
	rd := spSample(data, sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(40)}}}, spT0)
	rd.Initial = true
	if evs, _, _ := m.Apply(st, rd); len(evs) != 0 {
		t.Fatalf("retained DATA read by alias: %+v", evs)
	}
	// Live: its seq is not measured against the retained copies'.
	evs, _, _ := m.Apply(st, spSample(data, sptest.Payload{Seq: 90, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(53)}}}, spT0.Add(time.Second)))
	if spCount(evs, "p1", GoodCount) != 3 {
		t.Fatalf("after a retained BIRTH: %+v", evs)
	}
	// A BIRTH the broker redelivers (DUP) may be older than one missed.
	db := spSample(birth, sptest.Payload{Seq: 91, Metrics: []sptest.Metric{{Name: "Counters/Scrap Total", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1)}}}, spT0.Add(2*time.Second))
	db.Duplicate = true
	m.Apply(st, db)
	if evs, _, _ := m.Apply(st, spSample(data, sptest.Payload{Seq: 92, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(2)}}}, spT0.Add(3*time.Second))); len(evs) != 0 {
		t.Fatalf("read by alias with a redelivered BIRTH's map: %+v", evs)
	}
}

// Several values of one metric in one DATA message (a buffered backlog)
// are applied in order, each with its own timestamp.
func TestSparkplugSeveralValuesInOneMessage(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data := "spBv1.0/plant/NDATA/edge1"
	m.Apply(st, spSample(data, sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "Good", Datatype: sptest.Int64, Value: int64(10), Timestamp: ms(spT0)}}}, spT0))
	evs, _, err := m.Apply(st, spSample(data, sptest.Payload{Seq: 2, Metrics: []sptest.Metric{
		{Name: "Good", Datatype: sptest.Int64, Value: int64(12), Timestamp: ms(spT0.Add(time.Second))},
		{Name: "Good", Datatype: sptest.Int64, Value: int64(15), Timestamp: ms(spT0.Add(2 * time.Second))},
	}}, spT0.Add(3*time.Second)))
	if err != nil || spCount(evs, "p2", GoodCount) != 5 {
		t.Fatalf("%+v %v", evs, err)
	}
	if !evs[len(evs)-1].Time.Equal(spT0.Add(2 * time.Second)) {
		t.Errorf("time %v: not the metric's timestamp", evs[len(evs)-1].Time)
	}
}

func TestCheckSparkplug(t *testing.T) {
	p := sptest.Payload{Timestamp: ms(spT0), Seq: 0, Metrics: []sptest.Metric{{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.Int32, Value: int64(-3)}}}.Encode()
	found, v, ts, err := CheckSparkplug(GoodCount, "Counters/Good", p, 1<<32)
	if !found || v != int32(-3) || !ts.Equal(spT0) || err != nil {
		t.Fatalf("%v %v %v %v", found, v, ts, err)
	}
	if found, _, _, _ := CheckSparkplug(GoodCount, "Other", p, 0); found {
		t.Fatal("found another metric")
	}
	null := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.Int32, IsNull: true}}}.Encode()
	if found, _, _, err := CheckSparkplug(GoodCount, "Counters/Good", null, 0); found || err != nil {
		t.Fatalf("a null: found %v, %v; want not checked", found, err)
	}
}

// An NDEATH is ignored only when its bdSeq is behind the last NBIRTH's
// (modulo 256): a will from a later session, whose NBIRTH the agent
// missed, is a real death.
func TestSparkplugDeathAfterMissedBirth(t *testing.T) {
	m := newTestMapper(t, spConfig)
	bd := func(v int64) []sptest.Metric {
		return []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: v}}
	}
	for _, c := range []struct {
		birth, death int64
		down         bool
	}{
		{5, 6, true},    // NBIRTH 6 missed
		{5, 5, true},    // its own session's will
		{5, 4, false},   // the session before's, late
		{0, 255, false}, // the session before's, across the wrap
		{255, 0, true},  // a later session's, across the wrap
	} {
		st := NewState()
		m.Apply(st, spSample("spBv1.0/plant/NBIRTH/edge1", sptest.Payload{Seq: 0, Metrics: bd(c.birth)}, spT0))
		m.Apply(st, spSample("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Name: "State/Running", Datatype: sptest.Boolean, Value: true}}}, spT0))
		m.Apply(st, spSample("spBv1.0/plant/NDEATH/edge1", sptest.Payload{Seq: -1, Metrics: bd(c.death)}, spT0))
		if got := m.SparkplugDown(st, "p1") != ""; got != c.down {
			t.Errorf("NBIRTH bdSeq %d, NDEATH bdSeq %d: down %v, want %v", c.birth, c.death, got, c.down)
		}
	}
}

// A metric the edge node flags with a Quality other than good (192) is
// skipped as an OPC UA value of bad quality is: not counted, no reset, no
// stop; the next good value counts from the last good one.
func TestSparkplugBadQuality(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	data := "spBv1.0/plant/DDATA/edge1/press1"
	apply := func(seq int, min int, ms ...sptest.Metric) []Event {
		t.Helper()
		evs, _, err := m.Apply(st, spSample(data, sptest.Payload{Seq: seq, Metrics: ms}, spT0.Add(time.Duration(min)*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	good := func(v int64, q uint32) sptest.Metric {
		return sptest.Metric{Name: "Counters/Good", Datatype: sptest.UInt32, Value: v, Quality: q, HasQuality: true}
	}
	run := func(v bool, q uint32) sptest.Metric {
		return sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, Value: v, Quality: q, HasQuality: true}
	}
	apply(1, 0, good(5000, 192), run(true, 192))
	if evs := apply(2, 1, good(0, 0), run(false, 0)); len(evs) != 0 {
		t.Fatalf("BAD values applied: %+v", evs)
	}
	q := st.SparkplugBadQuality()
	if q[SignalKey{"p1", GoodCount}] != "Sparkplug quality BAD (0)" || q[SignalKey{"p1", Running}] == "" {
		t.Fatalf("bad quality %v", q)
	}
	if evs := apply(3, 2, good(4000, 500)); len(evs) != 0 {
		t.Fatalf("STALE value applied: %+v", evs)
	}
	evs := apply(4, 3, good(5100, 192), run(true, 192))
	if got := spCount(evs, "p1", GoodCount); got != 100 {
		t.Fatalf("good again: %v pieces, want 100 (%+v)", got, evs)
	}
	if q := st.SparkplugBadQuality(); len(q) != 0 {
		t.Fatalf("still bad: %v", q)
	}
	// No Quality property: good.
	if evs := apply(5, 4, sptest.Metric{Name: "Counters/Good", Datatype: sptest.UInt32, Value: int64(5101)}); spCount(evs, "p1", GoodCount) != 1 {
		t.Fatalf("no quality: %+v", evs)
	}
}

// A BIRTH over 1 MiB (a big edge node: every metric, with its name) is
// read: refused, it would leave every alias of its DATA unread.
func TestSparkplugBigBirth(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	p := sptest.Payload{Seq: 1}
	for i := range 25000 {
		p.Metrics = append(p.Metrics, sptest.Metric{Name: "Line/Some Long Folder Name/Tag " + strconv.Itoa(i), Alias: uint64(100 + i), HasAlias: true, Datatype: sptest.Float, Value: float32(1)})
	}
	p.Metrics = append(p.Metrics, sptest.Metric{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(10)})
	s := spSample("spBv1.0/plant/DBIRTH/edge1/press1", p, spT0)
	if len(s.Payload) <= 1<<20 {
		t.Fatalf("payload %d bytes: not over 1 MiB", len(s.Payload))
	}
	if _, _, err := m.Apply(st, s); err != nil {
		t.Fatal(err)
	}
	evs, _, err := m.Apply(st, spSample("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(12)}}}, spT0.Add(time.Second)))
	if err != nil || spCount(evs, "p1", GoodCount) != 2 {
		t.Fatalf("%+v %v", evs, err)
	}
}

// Samples of other MQTT topics are not split into Sparkplug parts.
func TestSparkplugOtherTopicsNoAllocation(t *testing.T) {
	m := newTestMapper(t, spConfig)
	n := testing.AllocsPerRun(100, func() {
		m.EachUse(connectors.KindMQTT, "b", "plant/line1/press/counts", func(string, Signal) {})
	})
	if n != 0 {
		t.Errorf("EachUse of a JSON topic: %v allocations", n)
	}
}

// The edge nodes whose BIRTH the agent needs (what a rebirth request asks
// for): DATA by alias with no current map, once per node however many
// aliases; not a retained DATA while the map is current; a seq gap of a
// node that sends by alias, not of one that names its metrics.
func TestSparkplugRebirthWanted(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	apply := func(topic string, p sptest.Payload, retained bool) {
		t.Helper()
		s := spSample(topic, p, spT0)
		s.Initial = retained
		m.Apply(st, s)
	}
	byAlias := []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(5)}, {Alias: 2, HasAlias: true, Value: int64(1)}}
	want := []SparkplugRebirth{{Source: "b", Group: "plant", Node: "edge1", Why: "unknown alias"}}
	apply("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 3, Metrics: byAlias}, false)
	apply("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 4, Metrics: byAlias}, false)
	if got := st.TakeSparkplugRebirths(); !slices.Equal(got, want) {
		t.Fatalf("DATA by alias at the start: %+v, want %+v", got, want)
	}
	if got := st.TakeSparkplugRebirths(); got != nil {
		t.Fatalf("taken twice: %+v", got)
	}
	birth := func() {
		apply("spBv1.0/plant/NBIRTH/edge1", sptest.Payload{Seq: 0}, false)
		apply("spBv1.0/plant/DBIRTH/edge1/press1", sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
			{Name: "Counters/Good", Alias: 1, HasAlias: true, Datatype: sptest.UInt32, Value: int64(5)},
		}}, false)
	}
	birth()
	apply("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 2, Metrics: byAlias[:1]}, false)
	if got := st.TakeSparkplugRebirths(); got != nil {
		t.Fatalf("with a current map: %+v", got)
	}
	apply("spBv1.0/plant/NDATA/edge1", sptest.Payload{Seq: 7}, false) // 3 to 6 lost
	if got, want := st.TakeSparkplugRebirths(), []SparkplugRebirth{{Source: "b", Group: "plant", Node: "edge1", Why: "seq gap"}}; !slices.Equal(got, want) {
		t.Fatalf("seq gap of a node sending by alias: %+v, want %+v", got, want)
	}
	birth()
	// Alias 3 is no metric of the BIRTH, in a retained DATA: not read,
	// and no BIRTH asked for (the map is current).
	apply("spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 3, HasAlias: true, Value: int64(1)}}}, true)
	if got := st.TakeSparkplugRebirths(); got != nil {
		t.Fatalf("retained DATA with a current map: %+v", got)
	}

	// An edge node that names its metrics (no aliases in its BIRTHs): its
	// seq gap needs no BIRTH, its DATA is read on.
	st = NewState()
	apply("spBv1.0/plant/NBIRTH/edge1", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Name: "Good", Datatype: sptest.UInt32, Value: int64(1)}}}, false)
	apply("spBv1.0/plant/NDATA/edge1", sptest.Payload{Seq: 5, Metrics: []sptest.Metric{{Name: "Good", Value: int64(2)}}}, false)
	if notes := st.TakeSparkplugNotes(); len(notes) != 1 || notes[0].Kind != "seq" {
		t.Fatalf("notes %+v, want the seq gap", notes)
	}
	if got := st.TakeSparkplugRebirths(); got != nil {
		t.Fatalf("seq gap of a node naming its metrics: %+v", got)
	}
}

// A rebirth request is what an edge node takes for one (Sparkplug 3.0):
// a timestamp, no seq, Node Control/Rebirth = true as a Boolean.
func TestRebirthRequestPayload(t *testing.T) {
	b := RebirthRequest(spT0)
	if err := sptest.CheckRebirth(b); err != nil {
		t.Fatal(err)
	}
	p, err := decodeSparkplug(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.ts != ms(spT0) || p.hasSeq || len(p.metrics) != 1 || p.metrics[0].name != RebirthMetric {
		t.Fatalf("decoded %+v", p)
	}
}

// Of a BIRTH, the metrics the signals read are kept by name, the others as
// an alias, a type and a hash (BenchmarkSparkplugBirths: a big edge node's
// BIRTHs kept whole took 17 MB). A DATA value of another metric is skipped
// quietly, and a signal a reload adds reads its metric by alias through the
// BIRTH that came before the reload, with no new BIRTH.
func TestSparkplugBirthKeptForWhatIsRead(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	topic := "spBv1.0/plant/DDATA/edge1/press1"
	apply := func(m *Mapper, p sptest.Payload, at time.Time) []Event {
		t.Helper()
		typ := "DDATA"
		if p.Seq == 1 {
			typ = "DBIRTH"
		}
		evs, _, err := m.Apply(st, spSample(strings.Replace(topic, "DDATA", typ, 1), p, at))
		if err != nil {
			t.Fatal(err)
		}
		if notes := st.TakeSparkplugNotes(); len(notes) != 0 {
			t.Errorf("seq %d: notes %+v", p.Seq, notes)
		}
		if w := st.SparkplugWaiting(); len(w) != 0 {
			t.Errorf("seq %d: waiting %+v", p.Seq, w)
		}
		if r := st.TakeSparkplugRebirths(); len(r) != 0 {
			t.Errorf("seq %d: rebirths wanted %+v", p.Seq, r)
		}
		return evs
	}
	birth := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(100)},
		{Name: "Counters/Scrap Total", Alias: 8, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1)},
		{Name: "State/Running", Alias: 9, HasAlias: true, Datatype: sptest.Boolean, Value: true},
		{Name: "Counters/Line2 Good", Alias: 11, HasAlias: true, Datatype: sptest.UInt32, Value: int64(50)},
	}}
	for i := range 5000 {
		birth.Metrics = append(birth.Metrics, sptest.Metric{Name: "Folder/Tag " + strconv.Itoa(i), Alias: uint64(1000 + i), HasAlias: true, Datatype: sptest.Float, Value: float32(1)})
	}
	apply(m, birth, spT0)
	pt, _ := config.ParseSparkplugTopic(topic)
	b := st.Sparkplug.nodes[SparkplugNodeKey("b", pt)].births["press1"]
	if len(b.aliases) != 3 || len(b.types) != 3 || len(b.others) != 5001 {
		t.Fatalf("kept %d aliases, %d types by name and %d others; want 3, 3 and 5001", len(b.aliases), len(b.types), len(b.others))
	}
	data := func(seq int, good, line2 int64) sptest.Payload {
		return sptest.Payload{Seq: seq, Metrics: []sptest.Metric{
			{Alias: 7, HasAlias: true, Value: good},
			{Alias: 1234, HasAlias: true, Value: float32(2)},
			{Alias: 11, HasAlias: true, Value: line2},
		}}
	}
	if evs := apply(m, data(2, 105, 55), spT0.Add(time.Second)); spCount(evs, "p1", GoodCount) != 5 {
		t.Fatalf("p1: %+v", evs)
	}

	// A reload: p3 reads Counters/Line2 Good.
	m = newTestMapper(t, spConfig+`  - id: p3
    workcenter: WC3
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Counters/Line2 Good } }
`)
	if evs := apply(m, data(3, 106, 60), spT0.Add(2*time.Second)); spCount(evs, "p1", GoodCount) != 1 || spCount(evs, "p3", GoodCount) != 0 {
		t.Fatalf("after the reload: %+v", evs) // p3's first value: where it starts
	}
	if evs := apply(m, data(4, 106, 63), spT0.Add(3*time.Second)); spCount(evs, "p3", GoodCount) != 3 {
		t.Fatalf("p3 by alias after the reload: %+v", evs)
	}
	if b.types["Counters/Line2 Good"] != spUInt32 {
		t.Errorf("type of the metric a reload reads: %d, want UInt32 (%d)", b.types["Counters/Line2 Good"], spUInt32)
	}
}

// With sparkplug_certificates, the BIRTH certificates a Sparkplug-aware
// broker keeps give the alias maps as the agent subscribes: DATA by alias
// is read without a BIRTH, after a start and after a reconnect. A
// certificate's values are not read (they may be hours old), nor its seq;
// a BIRTH received in the same connection stays over a certificate; an
// empty one (removed by the broker) changes nothing. Without the option
// the certificate topics are not read.
func TestSparkplugCertificates(t *testing.T) {
	cfg := strings.Replace(spConfig, "client_id: pe }", "client_id: pe, sparkplug_certificates: true }", 1)
	if cfg == spConfig {
		t.Fatal("config not changed")
	}
	m := newTestMapper(t, cfg)
	if got := m.MQTTTopics("b"); !slices.Equal(got, []string{"$sparkplug/certificates/spBv1.0/plant/NBIRTH/edge1", "$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/+", "spBv1.0/plant/+/edge1/#"}) {
		t.Errorf("MQTTTopics = %v", got)
	}
	st := NewState()
	data := "spBv1.0/plant/DDATA/edge1/press1"
	cert := "$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/press1"
	at := spT0
	apply := func(topic string, conn uint64, retained bool, p sptest.Payload) []Event {
		t.Helper()
		at = at.Add(time.Second)
		if p.Timestamp == 0 {
			p.Timestamp = ms(at) // as the spec has every BIRTH and DATA stamped
		}
		s := spSample(topic, p, at)
		s.Conn, s.Initial = conn, retained
		if p.Metrics == nil {
			s.Payload = nil
		}
		evs, _, err := m.Apply(st, s)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return evs
	}
	birth := func(seq int, good, scrap uint64, v int64) sptest.Payload {
		return sptest.Payload{Seq: seq, Metrics: []sptest.Metric{
			{Name: "Counters/Good", Alias: good, HasAlias: true, Datatype: sptest.UInt32, Value: v},
			{Name: "Counters/Scrap Total", Alias: scrap, HasAlias: true, Datatype: sptest.UInt32, Value: int64(1)},
		}}
	}
	dd := func(seq int, alias uint64, v int64) sptest.Payload {
		return sptest.Payload{Seq: seq, Metrics: []sptest.Metric{{Alias: alias, HasAlias: true, Value: v}}}
	}
	notes := func() (kinds []string) {
		for _, n := range st.TakeSparkplugNotes() {
			kinds = append(kinds, n.Kind)
		}
		return kinds
	}

	// The start: the certificate (retained, seq 0 of a BIRTH long ago),
	// then live DATA at seq 57.
	if evs := apply(cert, 1, true, birth(0, 7, 8, 100)); len(evs) != 0 {
		t.Fatalf("a certificate's values were read: %+v", evs)
	}
	if k := notes(); !slices.Equal(k, []string{"certificate"}) {
		t.Errorf("notes after the certificate: %v", k)
	}
	apply(data, 1, false, dd(57, 7, 500)) // the counter's first value: where it starts
	if evs := apply(data, 1, false, dd(58, 7, 503)); spCount(evs, "p1", GoodCount) != 3 {
		t.Fatalf("by the certificate's aliases: %+v", evs)
	}
	if k := notes(); len(k) != 0 || len(st.SparkplugWaiting()) != 0 || len(st.TakeSparkplugRebirths()) != 0 {
		t.Fatalf("notes %v, waiting %v", k, st.SparkplugWaiting())
	}

	// A rebirth in this connection re-aliases (Good 9, Scrap 10); a
	// certificate that comes after it (the broker's copy) does not undo it.
	apply("spBv1.0/plant/DBIRTH/edge1/press1", 1, false, birth(0, 9, 10, 503))
	apply(cert, 1, true, birth(0, 7, 8, 100))
	if evs := apply(data, 1, false, dd(1, 9, 507)); spCount(evs, "p1", GoodCount) != 4 {
		t.Fatalf("after the BIRTH: %+v", evs)
	}

	// A reconnect: the maps are no longer trusted until the certificate
	// (the edge node re-aliased meanwhile: Good 11) comes.
	if evs := apply(data, 2, false, dd(9, 11, 510)); len(evs) != 0 || len(st.SparkplugWaiting()) != 1 {
		t.Fatalf("DATA by alias before the certificate of the new connection: %+v, waiting %v", evs, st.SparkplugWaiting())
	}
	notes()
	st.TakeSparkplugRebirths()
	apply(cert, 2, true, birth(0, 11, 12, 505))
	if len(st.SparkplugWaiting()) != 0 {
		t.Errorf("still waiting after the certificate: %v", st.SparkplugWaiting())
	}
	if evs := apply(data, 2, false, dd(10, 11, 512)); spCount(evs, "p1", GoodCount) != 5 {
		t.Fatalf("after the reconnect's certificate: %+v", evs)
	}
	// Its seq is followed from the first DATA: a gap still distrusts.
	apply(data, 2, false, dd(12, 11, 513))
	if k := notes(); !slices.Contains(k, "seq") {
		t.Errorf("a seq gap after a certificate: notes %v", k)
	}
	// An empty certificate (the broker removed it) changes nothing.
	apply(cert, 2, true, sptest.Payload{})
	if k := notes(); len(k) != 0 {
		t.Errorf("an empty certificate: notes %v", k)
	}

	// Another reconnect: the certificate is of a BIRTH at 09:00; a DATA
	// stamped 08:59 (queued for the agent's session, sent under the BIRTH
	// before, whose alias 11 was another metric) is not read by it: it
	// waits for a BIRTH, as any alias without a current map; the DATA
	// after it counts what it held, and nothing waits any more.
	st.TakeSparkplugRebirths()
	nine := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	c := birth(0, 11, 12, 505)
	c.Timestamp = ms(nine)
	apply(cert, 3, true, c)
	notes()
	old := dd(40, 11, 9999)
	old.Timestamp = ms(nine.Add(-time.Minute))
	if evs := apply(data, 3, false, old); len(evs) != 0 {
		t.Fatalf("a DATA older than the certificate read: %+v", evs)
	}
	if k := notes(); !slices.Equal(k, []string{"alias"}) || len(st.SparkplugWaiting()) != 1 || len(st.TakeSparkplugRebirths()) != 1 {
		t.Errorf("a DATA older than the certificate: notes %v, waiting %v", k, st.SparkplugWaiting())
	}
	cur := dd(41, 11, 525)
	cur.Timestamp = ms(nine.Add(time.Minute))
	if evs := apply(data, 3, false, cur); spCount(evs, "p1", GoodCount) != 13 {
		t.Fatalf("the DATA after the certificate's BIRTH: %+v", evs)
	}
	if w := st.SparkplugWaiting(); len(w) != 0 {
		t.Errorf("still waiting after a DATA read by the certificate: %v", w)
	}
	// Borne out, the map reads on though the clock was set back since.
	back := dd(42, 11, 527)
	back.Timestamp = ms(nine.Add(-time.Hour))
	if evs := apply(data, 3, false, back); spCount(evs, "p1", GoodCount) != 2 {
		t.Fatalf("a DATA after the clock was set back: %+v", evs)
	}

	// Without the option, the topics are not the agent's.
	m = newTestMapper(t, spConfig)
	if m.Maps(connectors.KindMQTT, "b", cert) || len(m.MQTTTopics("b")) != 1 {
		t.Error("certificates read without sparkplug_certificates")
	}
	if !m.Maps(connectors.KindMQTT, "b", data) {
		t.Error("DATA not mapped")
	}
}

// spHist is a Sparkplug machine, p1, with a run state and a stop code, for
// the tests of stored (is_historical) values; lines holds its stop events
// (and the ends of booked stops corrected) as they come.
type spHist struct {
	t     *testing.T
	m     *Mapper
	st    *State
	lines []Event
}

func newSPHist(t *testing.T) *spHist {
	const cfg = mqttHead + `  - id: p1
    workcenter: WC1
    running: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State/Running } }
    downtime_reason: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: State/Code }, map: { J: Jam } }
`
	return &spHist{t: t, m: newTestMapper(t, cfg), st: NewState()}
}

// spAt is min minutes after spT0.
func spAt(min float64) time.Time { return spT0.Add(time.Duration(min * float64(time.Minute))) }

// spRun and spCode are p1's run state and stop code stamped at minute min.
func spRun(v bool, min float64) sptest.Metric {
	return sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, Value: v, Timestamp: ms(spAt(min))}
}

func spCode(v string, min float64) sptest.Metric {
	return sptest.Metric{Name: "State/Code", Datatype: sptest.String, Value: v, Timestamp: ms(spAt(min))}
}

// spStored flags mt is_historical.
func spStored(mt sptest.Metric) sptest.Metric { mt.Historical = true; return mt }

// on applies a message on topic received at minute recv.
func (h *spHist) on(topic string, recv float64, metrics ...sptest.Metric) []Event {
	h.t.Helper()
	evs, _, err := h.m.Apply(h.st, spSample(topic, sptest.Payload{Seq: 1, Metrics: metrics}, spAt(recv)))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == EventRunning || e.Kind == EventStopped || e.Kind == EventEndStored {
			h.lines = append(h.lines, e)
		}
	}
	return evs
}

func (h *spHist) send(recv float64, metrics ...sptest.Metric) []Event {
	h.t.Helper()
	return h.on("spBv1.0/plant/DDATA/edge1/press1", recv, metrics...)
}

func (h *spHist) birth(recv float64, metrics ...sptest.Metric) {
	h.t.Helper()
	h.on("spBv1.0/plant/DBIRTH/edge1/press1", recv, metrics...)
}

// got returns the stop events since the last call.
func (h *spHist) got() []Event { l := h.lines; h.lines = nil; return l }

// want checks the stop events since the last look.
func (h *spHist) want(what string, evs ...Event) {
	h.t.Helper()
	lines := h.got()
	if len(lines) != len(evs) {
		h.t.Fatalf("%s: %d stop events %+v, want %d", what, len(lines), lines, len(evs))
	}
	for i, w := range evs {
		g := lines[i]
		if g.Kind != w.Kind || !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || !g.BookedEnd.Equal(w.BookedEnd) || g.Reason != w.Reason || g.Historical != w.Historical || g.Stored != w.Stored || (w.Loss != "" && g.Loss != w.Loss) {
			h.t.Errorf("%s: event %d %+v, want %+v", what, i, g, w)
		}
	}
}

// An edge node back from an outage (Ignition's store and forward) sends its
// BIRTH with the run state as it is, then the values it stored flagged
// is_historical, older: each stored stop and the run that ended it are a
// line of their own, with the stored reason, the current state left as it
// is. A stored stop within a stop already booked (open when the node lost
// the broker, ended by the BIRTH) is not booked again; a stored value later
// than the live state the history began after begins the next outage's.
func TestSparkplugHistoricalStops(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0), code("", 0))
	// Away from minute 1 to 10; back at 10 (running), then the stored values.
	h.send(10, run(true, 10), code("", 10))
	h.send(10, stored(code("J", 2)), stored(run(false, 2)), stored(run(true, 3)))
	h.send(10, stored(code("", 5)), stored(run(false, 5)), stored(run(false, 5.5)), stored(run(true, 6)))
	h.send(10, stored(run(true, 1)))                        // older than what the history told: not taken
	h.send(10, stored(run(false, 7)))                       // a stored stop whose run is not stored: nothing
	h.send(10, stored(run(true, 4)), stored(run(false, 4))) // out of the stored order: not taken
	h.want("first outage",
		Event{Kind: EventRunning, Start: at(2), End: at(3), Reason: "J", Loss: "Jam", Historical: true},
		Event{Kind: EventRunning, Start: at(5), End: at(6), Historical: true})
	if r := h.st.Machines["p1"].Running; r == nil || !*r {
		t.Fatalf("the current run state after the history: %v", r)
	}
	// Live: stopped at 12; away from 13 to 20, still stopped at 13 and
	// then running from 14 to 15, stopped from 15 to 16: the BIRTH's run
	// at 20 ends the stop from 12, which covers what is stored.
	h.send(12, run(false, 12))
	h.want("live stop", Event{Kind: EventStopped, Start: at(12)})
	h.send(20, run(true, 20))
	h.want("the BIRTH ends it", Event{Kind: EventRunning, Start: at(12), End: at(20)})
	h.send(20, stored(run(true, 14)), stored(run(false, 15)), stored(run(true, 16)))
	h.want("within the booked stop")
	// Live stop at 30, away from 31 to 40 (still stopped): a stored stop
	// from 25 to 35 is cut at the current stop's start; the history of the
	// last outage (stopped at 7) is not carried into this one.
	h.send(30, run(false, 30))
	h.want("second live stop", Event{Kind: EventStopped, Start: at(30)})
	h.send(40, run(false, 40))
	h.send(40, stored(run(true, 24)), stored(run(false, 25)), stored(run(true, 35)))
	h.want("cut at the current stop", Event{Kind: EventRunning, Start: at(25), End: at(30), Historical: true})
}

// Ignition flushes its stored values while live values go on: a live run
// state that comes between a stored stop and its stored run does not lose
// that stop (the stored run still ends it).
func TestSparkplugHistoricalStopAcrossALiveValue(t *testing.T) {
	h := newSPHist(t)
	run, at, stored := spRun, spAt, spStored
	h.send(0, run(true, 0))
	h.birth(10, run(true, 10)) // back after an outage from 1 to 10, running
	h.send(10, stored(run(true, 1)), stored(run(false, 2)))
	h.send(11, run(false, 11)) // live, while the history is flushed
	h.send(11, stored(run(true, 3)))
	h.want("a stored stop across a live value",
		Event{Kind: EventStopped, Start: at(11)},
		Event{Kind: EventRunning, Start: at(2), End: at(3), Historical: true})
}

// A stop open when the edge node lost the broker and still open at the
// BIRTH covers what was stored meanwhile: also when the history comes
// after the stop ended live and a live stop ended since (a slow flush), it
// is not booked a second time. (One the BIRTH's run state ended:
// TestSparkplugHistoricalRunEndsTheBirthsStopAfterALiveStop.)
func TestSparkplugHistoricalStopCoveredAfterALiveStop(t *testing.T) {
	h := newSPHist(t)
	run, stored := spRun, spStored
	h.send(0, run(true, 0))
	// Stopped at 20, away from 21 to 30 and still stopped then: the BIRTH
	// stamps the run state with the time it last changed (20). The stop
	// ends live at 31, another from 32 to 33; then the stored values.
	h.send(20, run(false, 20))
	h.birth(30, run(false, 20))
	h.send(31, run(true, 31))
	h.send(32, run(false, 32))
	h.send(33, run(true, 33))
	h.got()
	h.send(33, stored(run(true, 22)), stored(run(false, 24)), stored(run(true, 25)))
	h.want("stored within the line from 20 to 31")
}

// A stored reason is the stored stops' even when no live reason came before
// it (none yet, or the BIRTH gave the metric no value): not taken as the
// machine's current reason (the review of the historical stops).
func TestSparkplugHistoricalReasonWithNoLiveReasonBefore(t *testing.T) {
	h := newSPHist(t)
	run, code, at, stored := spRun, spCode, spAt, spStored
	h.send(0, run(true, 0))
	h.birth(10, run(true, 10))
	h.send(10, stored(code("J", 2)), stored(run(false, 2)), stored(run(true, 3)), stored(code("", 3)))
	h.want("the stored stop", Event{Kind: EventRunning, Start: at(2), End: at(3), Reason: "J", Loss: "Jam", Historical: true})
	if ms := h.st.Machines["p1"]; ms.ReasonSet || !ms.ReasonTime.IsZero() {
		t.Fatalf("current reason taken from the history: %q at %v", ms.Reason, ms.ReasonTime)
	}
}

// An edge node's devices no signal reads have their BIRTH kept (a reload
// that reads one reads its DATA by alias at once) and their DEATH, up to
// spUnreadDevicesKept of them: an edge node that names a device per serial
// number, or a client publishing under the node's topics, must not grow
// the agent for good (the probe of a year's run: 200,000 device BIRTHs
// took 114 MB of heap). Past the bound it is said once, and the devices
// read keep theirs.
func TestSparkplugUnreadDevicesBounded(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	seq := 0
	apply := func(topic string, metrics ...sptest.Metric) {
		t.Helper()
		if _, _, err := m.Apply(st, spSample(topic, sptest.Payload{Seq: seq % 256, Metrics: metrics}, spT0)); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	apply("spBv1.0/plant/NBIRTH/edge1")
	n := spUnreadDevicesKept + 500
	for i := range n {
		apply(fmt.Sprintf("spBv1.0/plant/DBIRTH/edge1/serial-%d", i), sptest.Metric{Name: "x", Alias: 1, HasAlias: true, Datatype: sptest.Int64, Value: int64(i)})
		apply(fmt.Sprintf("spBv1.0/plant/DDEATH/edge1/gone-%d", i))
	}
	apply("spBv1.0/plant/DBIRTH/edge1/press1", sptest.Metric{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(100)})
	apply("spBv1.0/plant/DDEATH/edge1/press1")
	node := st.Sparkplug.nodes["b\x00plant/edge1"]
	if len(node.births) > spUnreadDevicesKept+2 || len(node.deadDev) > spUnreadDevicesKept+1 {
		t.Errorf("kept %d BIRTHs and %d DEATHs of %d devices, want at most %d", len(node.births), len(node.deadDev), n, spUnreadDevicesKept)
	}
	if node.births["press1"] == nil || !node.deadDev["press1"] {
		t.Error("the device read lost its BIRTH or DEATH")
	}
	if node.births["serial-0"] == nil {
		t.Error("a device no signal reads, within the bound: its BIRTH not kept")
	}
	var said []SparkplugNote
	for _, nt := range st.TakeSparkplugNotes() {
		if nt.Kind == "devices" {
			said = append(said, nt)
		}
	}
	if len(said) != 1 || !strings.Contains(said[0].Msg, strconv.Itoa(spUnreadDevicesKept)) {
		t.Errorf("notes %+v, want one of kind devices naming the bound", said)
	}
}
