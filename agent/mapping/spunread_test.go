package mapping

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

// spLateConfig is spConfig after a reload that reads device late of edge1.
const spLateConfig = spConfig + `  - id: p9
    workcenter: WC9
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/late, field: Counters/Good } }
`

// spSeqApply applies Sparkplug messages of edge1 in seq order.
type spSeqApply struct {
	t   *testing.T
	st  *State
	seq int
}

func (a *spSeqApply) apply(m *Mapper, topic string, metrics ...sptest.Metric) []Event {
	a.t.Helper()
	p := sptest.Payload{Seq: a.seq % 256, Metrics: metrics}
	if strings.Contains(topic, "/NBIRTH/") {
		p.Seq, a.seq = 0, 0
	}
	if strings.Contains(topic, "/NDEATH/") {
		p.Seq = -1
	} else {
		a.seq++
	}
	evs, _, err := m.Apply(a.st, spSample(topic, p, spT0))
	if err != nil {
		a.t.Fatal(err)
	}
	return evs
}

func spGood(alias uint64, v int64) sptest.Metric {
	return sptest.Metric{Name: "Counters/Good", Alias: alias, HasAlias: true, Datatype: sptest.UInt32, Value: v}
}

func spBdSeq(n int64) sptest.Metric {
	return sptest.Metric{Name: "bdSeq", Datatype: sptest.Int64, Value: n}
}

func spUnreadMetrics(st *State) (n int) {
	node := st.Sparkplug.nodes["b\x00plant/edge1"]
	for d, b := range node.births {
		if d != "" && d != "press1" {
			n += len(b.others)
		}
	}
	return n
}

// A device no signal reads has its BIRTH dropped at its DDEATH: over a
// year of devices that come and go (a device id per serial number), the
// spUnreadDevicesKept slots do not fill with devices long gone, and a
// device alive that a reload reads is read by alias at once. The device
// read keeps its BIRTH at its DDEATH.
func TestSparkplugUnreadDeviceBirthDroppedAtItsDeath(t *testing.T) {
	m := newTestMapper(t, spConfig)
	a := &spSeqApply{t: t, st: NewState()}
	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(1))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/press1", spGood(7, 100))
	for i := range 2 * spUnreadDevicesKept {
		dev := "serial-" + strconv.Itoa(i)
		a.apply(m, "spBv1.0/plant/DBIRTH/edge1/"+dev, spGood(1, int64(i)))
		a.apply(m, "spBv1.0/plant/DDEATH/edge1/"+dev)
	}
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/late", spGood(1, 500))
	a.apply(m, "spBv1.0/plant/DDEATH/edge1/press1")
	node := a.st.Sparkplug.nodes["b\x00plant/edge1"]
	if node.births["serial-0"] != nil || len(node.births) != 3 {
		t.Errorf("kept %d BIRTHs (serial-0's: %v), want 3: the node's, press1's and late's", len(node.births), node.births["serial-0"] != nil)
	}
	if node.births["press1"] == nil {
		t.Error("the device read lost its BIRTH at its DDEATH")
	}
	a.st.TakeSparkplugNotes()

	m = newTestMapper(t, spLateConfig)
	evs := a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(510)})
	evs = append(evs, a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(520)})...)
	if got := spCount(evs, "p9", GoodCount); got != 10 {
		t.Fatalf("late, read after the reload: counted %v, want 10 (notes %+v)", got, a.st.TakeSparkplugNotes())
	}
	if r := a.st.TakeSparkplugRebirths(); len(r) != 0 {
		t.Errorf("rebirths asked %+v", r)
	}
}

// The BIRTHs of an edge node's devices no signal reads end with its
// session: at its NDEATH, and at an NBIRTH (one whose NDEATH was missed);
// those of the devices read stay. A reload that then reads such a device
// waits for its next BIRTH, and asks for one, as after a restart: the log
// says its BIRTH was not kept. Not a BIRTH that may be newer than the
// DEATH: one that came live after a retained DDEATH, or a retained one
// with a retained NBIRTH (a broker sends retained messages in any order).
func TestSparkplugUnreadDeviceBirthsEndWithTheSession(t *testing.T) {
	m := newTestMapper(t, spConfig)
	a := &spSeqApply{t: t, st: NewState()}
	node := func() *spNode { return a.st.Sparkplug.nodes["b\x00plant/edge1"] }
	kept := func(devs ...string) (out []string) {
		for _, d := range devs {
			if node().births[d] != nil {
				out = append(out, d)
			}
		}
		return out
	}
	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(1))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/press1", spGood(7, 100))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/a", spGood(1, 1))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/late", spGood(1, 500))
	a.apply(m, "spBv1.0/plant/NDEATH/edge1", spBdSeq(1))
	if got := kept("", "press1", "a", "late"); fmt.Sprint(got) != "[ press1]" {
		t.Errorf("after the NDEATH, BIRTHs kept of %q, want the node's and press1's", got)
	}

	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(2))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/press1", spGood(7, 100))
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/c", spGood(1, 1))
	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(3))
	if got := kept("", "press1", "c"); fmt.Sprint(got) != "[ press1]" {
		t.Errorf("after a new NBIRTH, BIRTHs kept of %q, want the node's and press1's", got)
	}

	// Retained copies, after live ones in the connection, or with each
	// other in a new one.
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/d", spGood(1, 1))
	retained := func(conn uint64, topic string, p sptest.Payload) {
		s := spSample(topic, p, spT0)
		s.Initial, s.Conn = true, conn
		if _, _, err := m.Apply(a.st, s); err != nil {
			t.Fatal(err)
		}
	}
	retained(0, "spBv1.0/plant/DDEATH/edge1/d", sptest.Payload{Seq: 9})
	if got := kept("d"); len(got) != 1 {
		t.Error("d's BIRTH, live, dropped at a retained DDEATH after it")
	}
	retained(1, "spBv1.0/plant/DBIRTH/edge1/e", sptest.Payload{Seq: 10, Metrics: []sptest.Metric{spGood(1, 1)}})
	retained(1, "spBv1.0/plant/NBIRTH/edge1", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{spBdSeq(3)}})
	if got := kept("e"); len(got) != 1 {
		t.Error("e's BIRTH, retained, dropped at a retained NBIRTH after it")
	}

	// late died with the session of its BIRTH: read after a reload, its
	// DATA by alias (against the spec: it sends its DBIRTH first) waits.
	a.st.TakeSparkplugNotes()
	m = newTestMapper(t, spLateConfig)
	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(4))
	evs := a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(510)})
	if got := spCount(evs, "p9", GoodCount); got != 0 {
		t.Errorf("late counted %v by an alias of a BIRTH of an earlier session", got)
	}
	if r := a.st.TakeSparkplugRebirths(); len(r) != 1 {
		t.Errorf("rebirths asked %+v, want one", r)
	}
	var said string
	for _, n := range a.st.TakeSparkplugNotes() {
		if n.Kind == "alias" {
			said = n.Msg
		}
	}
	if !strings.Contains(said, "not kept") || !strings.Contains(said, "died") {
		t.Errorf("the log of the alias not read: %q, want why its BIRTH was not kept", said)
	}
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/late", spGood(1, 520))
	evs = a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(530)})
	if got := spCount(evs, "p9", GoodCount); got != 10 {
		t.Errorf("late counted %v after its DBIRTH, want 10", got)
	}
}

// spBigBirth is a DBIRTH of metrics metrics (Ignition's tag paths as names,
// each with an alias from first).
func spBigBirth(metrics int, first uint64) sptest.Payload {
	p := sptest.Payload{Seq: -1}
	for i := range metrics {
		p.Metrics = append(p.Metrics, sptest.Metric{Name: "Line 4/Some Folder/Station " + strconv.Itoa(i/50) + "/Tag " + strconv.Itoa(i), Alias: first + uint64(i), HasAlias: true, Datatype: sptest.Float, Value: float32(1)})
	}
	return p
}

// The BIRTHs of an edge node's devices no signal reads are kept up to
// spUnreadMetricsKept metrics in all, not only spUnreadDevicesKept devices:
// 1,000 devices of 5,000 tags kept took 117.5 MB of heap. Past it is said
// once; the devices read keep theirs, of any size; a device whose new
// BIRTH is not kept loses its earlier one (its aliases are no longer the
// device's).
func TestSparkplugUnreadBirthsBoundedInMetrics(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	applyRaw := func(m *Mapper, topic string, payload []byte) []Event {
		t.Helper()
		evs, _, err := m.Apply(st, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: topic, Good: true, ReceiveTime: spT0, Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	apply := func(m *Mapper, topic string, p sptest.Payload) []Event {
		t.Helper()
		return applyRaw(m, topic, p.Encode())
	}
	const metrics = 5000
	devices := spUnreadMetricsKept/metrics + 2 // two past it: said once
	big := spBigBirth(metrics, 100)
	big.Metrics[0] = spGood(1, 10)
	bigRaw := big.Encode()
	for d := range devices {
		applyRaw(m, "spBv1.0/plant/DBIRTH/edge1/dev"+strconv.Itoa(d), bigRaw)
	}
	if n := spUnreadMetrics(st); n > spUnreadMetricsKept || n < spUnreadMetricsKept-metrics {
		t.Errorf("kept %d metrics of devices no signal reads, want at most %d (and the devices within)", n, spUnreadMetricsKept)
	}
	var said []string
	for _, n := range st.TakeSparkplugNotes() {
		if strings.Contains(n.Msg, strconv.Itoa(spUnreadMetricsKept)) {
			said = append(said, n.Msg)
		}
	}
	if len(said) != 1 {
		t.Errorf("said %q, want once that the metrics bound is reached", said)
	}

	// The device read: kept, however big, and read by alias.
	read := spBigBirth(metrics, 100)
	read.Metrics = append(read.Metrics, spGood(7, 100))
	apply(m, "spBv1.0/plant/DBIRTH/edge1/press1", read)
	evs := apply(m, "spBv1.0/plant/DDATA/edge1/press1", sptest.Payload{Seq: -1, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(105)}}})
	if got := spCount(evs, "p1", GoodCount); got != 5 {
		t.Errorf("press1 counted %v, want 5", got)
	}

	// dev0 re-aliases in a BIRTH one metric bigger, past the bound: its
	// earlier BIRTH's alias 1 is not read as Counters/Good after a reload
	// that reads it.
	bigger := spBigBirth(metrics+1, 100)
	bigger.Metrics[1] = spGood(2, 20)
	bigger.Metrics[0].Alias = 1
	apply(m, "spBv1.0/plant/DBIRTH/edge1/dev0", bigger)
	m = newTestMapper(t, spConfig+`  - id: p9
    workcenter: WC9
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/dev0, field: Counters/Good } }
`)
	evs = apply(m, "spBv1.0/plant/DDATA/edge1/dev0", sptest.Payload{Seq: -1, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(15)}}})
	if got := spCount(evs, "p9", GoodCount); got != 0 {
		t.Errorf("dev0 counted %v by the alias of its BIRTH before the last", got)
	}
}

// BenchmarkSparkplugUnreadBirths measures what the state keeps of the
// BIRTHs of 1,000 devices of 5,000 metrics each (Ignition's tag paths as
// names, every metric with an alias) of an edge node, none of them read:
// retained_MB is the heap they leave behind, B/metric_kept that divided by
// the metrics kept, BIRTH_KiB the size of one BIRTH as sent.
func BenchmarkSparkplugUnreadBirths(b *testing.B) {
	m := newTestMapper(b, spConfig)
	const devices, metrics = 1000, 5000
	payload := spBigBirth(metrics, 100).Encode()
	var retained uint64
	var kept int
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		st := NewState()
		for d := range devices {
			s := connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "spBv1.0/plant/DBIRTH/edge1/dev" + strconv.Itoa(d), Good: true, ReceiveTime: spT0, Payload: payload}
			if _, _, err := m.Apply(st, s); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = after.HeapAlloc - before.HeapAlloc
		kept = spUnreadMetrics(st)
		runtime.KeepAlive(st)
	}
	b.ReportMetric(float64(retained)/(1<<20), "retained_MB")
	b.ReportMetric(float64(kept), "metrics_kept")
	b.ReportMetric(float64(retained)/float64(max(kept, 1)), "B/metric_kept")
	b.ReportMetric(float64(len(payload))/1024, "BIRTH_KiB")
	b.ReportMetric(0, "ns/op")
}

// A device a reload reads keeps its BIRTH, which no longer counts towards
// spUnreadMetricsKept: the bound is of the BIRTHs kept of devices no
// signal reads. Before, the metrics of a BIRTH that came while no signal
// read its device counted until its next BIRTH (for a stable edge node,
// months): another device's BIRTH well within the bound was not kept, the
// log said the bound was passed, and a reload that read that device waited
// for its next BIRTH.
func TestSparkplugDeviceReadAfterAReloadLeavesTheMetricsBound(t *testing.T) {
	m := newTestMapper(t, spConfig)
	a := &spSeqApply{t: t, st: NewState()}
	a.apply(m, "spBv1.0/plant/NBIRTH/edge1", spBdSeq(1))
	late := spBigBirth(spUnreadMetricsKept-10, 100)
	late.Metrics[0] = spGood(1, 500)
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/late", late.Metrics...)

	m = newTestMapper(t, spLateConfig) // late is read from here on
	evs := a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(510)})
	evs = append(evs, a.apply(m, "spBv1.0/plant/DDATA/edge1/late", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(520)})...)
	if got := spCount(evs, "p9", GoodCount); got != 10 {
		t.Fatalf("late, read after the reload: counted %v, want 10", got)
	}
	small := spBigBirth(20, 100)
	small.Metrics[0] = spGood(1, 10)
	a.apply(m, "spBv1.0/plant/DBIRTH/edge1/small", small.Metrics...)
	for _, n := range a.st.TakeSparkplugNotes() {
		if n.Kind == "devicemetrics" {
			t.Errorf("said %q with 20 metrics kept of devices no signal reads", n.Msg)
		}
	}
	if n := a.st.Sparkplug.nodes["b\x00plant/edge1"].unreadMetrics; n > 20 {
		t.Errorf("counted %d metrics of BIRTHs of devices no signal reads, want 20 (small's)", n)
	}

	m = newTestMapper(t, spLateConfig+`  - id: p8
    workcenter: WC8
    good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/small, field: Counters/Good } }
`)
	evs = a.apply(m, "spBv1.0/plant/DDATA/edge1/small", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(15)})
	evs = append(evs, a.apply(m, "spBv1.0/plant/DDATA/edge1/small", sptest.Metric{Alias: 1, HasAlias: true, Value: int64(20)})...)
	if got := spCount(evs, "p8", GoodCount); got != 5 {
		t.Errorf("small, read after a second reload: counted %v, want 5 (rebirths asked %+v)", got, a.st.TakeSparkplugRebirths())
	}
}
