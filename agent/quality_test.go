package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua"
)

// An OPC UA value flapping between Good and Uncertain (a marginal field bus,
// a gateway's UncertainLastUsableValue) is logged once each way, then at
// most once a minute: 1,000 flaps are not 1,000 lines.
func TestFlappingQualityDoesNotFloodTheLog(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }]
`)
	logs := &agenttest.SyncBuffer{}
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	now := time.Now()
	for i := range 1000 {
		s := connectors.Sample{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: int64(100 + i),
			Good: i%2 == 0, ReceiveTime: now.Add(time.Duration(i) * time.Millisecond)}
		if !s.Good {
			s.Quality = "UncertainLastUsableValue"
		}
		a.commitSamples(context.Background(), []connectors.Sample{s})
	}
	bad := strings.Count(logs.String(), "source value has bad or uncertain quality")
	good := strings.Count(logs.String(), "source value good again")
	if bad != 1 || good != 1 {
		t.Errorf("one tag flapping 500 times wrote %d + %d quality log lines", bad, good)
	}
}

// A good value the server flags (GoodClamped, GoodLocalOverride) is taken,
// and the log says so once a minute at most per tag (the uatypes probe:
// nothing said so).
func TestGoodButFlaggedValueIsSaid(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }]
`)
	logs := &agenttest.SyncBuffer{}
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	now := time.Now()
	for i := range 5 {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Value: int64(100 + i), Good: true, Quality: "GoodClamped", ReceiveTime: now.Add(time.Duration(i) * time.Millisecond)}})
	}
	if n := strings.Count(logs.String(), "source value is good but flagged by the server"); n != 1 || !strings.Contains(logs.String(), "quality=GoodClamped") {
		t.Errorf("%d lines for 5 flagged values:\n%s", n, logs.String())
	}
	if got := a.totals["m1"].Good; got != 4 {
		t.Errorf("counted %g, want 4 (taken as they are)", got)
	}
}

// A tag whose values cannot be used (beyond its rollover, text) shows on
// its machine in status until a usable value comes; a counter holding
// values stamped in its past (a PLC restarted with its clock behind) too.
func TestUnusableAndHeldValuesShowInStatus(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines:
  - { id: m1, workcenter: W1, good_count: { opcua: { server: line1, node: "ns=2;s=Good" }, rollover: 65536 } }
  - { id: m2, workcenter: W2, good_count: { opcua: { server: line1, node: "ns=2;s=Good2" } } }
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	a.fwd = newForwarder(a) // not started: status as of an agent that cannot reach Odoo
	a.opened.Store(true)
	now := time.Now().UTC().Truncate(time.Second)
	sample := func(node string, v any, src time.Time) {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "line1", Kind: connectors.KindOPCUA, Address: node,
			Value: v, Good: true, SourceTime: src, ReceiveTime: time.Now()}})
	}
	machineErr := func(id string) string {
		for _, m := range a.Status().Machines {
			if m.ID == id {
				return m.Error
			}
		}
		t.Fatalf("no machine %s in status", id)
		return ""
	}
	sample("ns=2;s=Good", int64(65000), now)
	sample("ns=2;s=Good", int64(66090), now.Add(time.Second))
	if e := machineErr("m1"); !strings.Contains(e, "good_count: line1 sent a value that cannot be used") || !strings.Contains(e, "beyond its rollover") {
		t.Errorf("m1 error after a value beyond rollover: %q", e)
	}
	sample("ns=2;s=Good", int64(65010), now.Add(2*time.Second))
	if e := machineErr("m1"); e != "" {
		t.Errorf("m1 error after a usable value: %q", e)
	}

	sample("ns=2;s=Good2", int64(1200), now)
	for i := range 20 {
		sample("ns=2;s=Good2", int64(i*10), now.Add(-time.Hour+time.Duration(i)*time.Second))
	}
	if e := machineErr("m2"); !strings.Contains(e, "20 values in a row lower than 1200 and stamped before it, held") {
		t.Errorf("m2 error while its values are held: %q", e)
	}
	sample("ns=2;s=Good2", int64(1300), now.Add(-time.Hour+time.Minute))
	if e := machineErr("m2"); e != "" {
		t.Errorf("m2 error once counted: %q", e)
	}
	if got := a.Status().Machines[1].GoodCount; got != 1300 {
		t.Errorf("m2 counted %v, want 1300 (a reset with the clock behind: from zero)", got)
	}
}

// The namespace pins of OPC UA nodes live in the buffer file: a server that
// renumbered its namespaces while the agent was down too is still read by URI.
func TestNamespacePinsKeptInTheBuffer(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }]
`)
	a, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		a.buf = buf
		pins := nsPins{a: a, source: "line1", endpoint: "opc.tcp://127.0.0.1:1"}
		if round == 0 {
			if _, ok := pins.NamespacePin("ns=2;s=Good"); ok {
				t.Fatal("a pin before the first read")
			}
			if err := pins.SetNamespacePin("ns=2;s=Good", "urn:plant"); err != nil {
				t.Fatal(err)
			}
			// A session's first sight of several nodes: kept at once.
			if err := pins.SetNamespacePins(map[string]string{"ns=2;s=A": "urn:plant", "ns=5;s=B": "urn:b"}); err != nil {
				t.Fatal(err)
			}
		}
		if uri, ok := pins.NamespacePin("ns=2;s=Good"); !ok || uri != "urn:plant" {
			t.Errorf("round %d: pin %q, %v", round, uri, ok)
		}
		for node, want := range map[string]string{"ns=2;s=A": "urn:plant", "ns=5;s=B": "urn:b"} {
			if uri, ok := pins.NamespacePin(node); !ok || uri != want {
				t.Errorf("round %d: pin of %s %q, %v; want %s", round, node, uri, ok, want)
			}
		}
		if _, ok := (nsPins{a: a, source: "line2", endpoint: "opc.tcp://127.0.0.1:1"}).NamespacePin("ns=2;s=Good"); ok {
			t.Errorf("round %d: another server's node has the pin", round)
		}
		// The source pointed at another endpoint (a replacement PLC): its
		// nodes are pinned anew.
		moved := nsPins{a: a, source: "line1", endpoint: "opc.tcp://10.0.0.9:4840"}
		if uri, ok := moved.NamespacePin("ns=2;s=Good"); ok {
			t.Errorf("round %d: the pin (%s) taken at another endpoint is used", round, uri)
		}
		if round == 1 {
			if err := moved.SetNamespacePin("ns=2;s=Good", "urn:plant-b"); err != nil {
				t.Fatal(err)
			}
			if uri, ok := moved.NamespacePin("ns=2;s=Good"); !ok || uri != "urn:plant-b" {
				t.Errorf("pinned anew at the new endpoint: %q, %v", uri, ok)
			}
		}
		if err := buf.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A pin kept by a version that stored the URI alone is taken at the
	// endpoint the source has now, and kept with it: pointed elsewhere
	// later, the source pins its nodes anew.
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	a.buf = buf
	if err := buf.PutMeta(context.Background(), buffer.KV{Key: nsPinKey("line1", "ns=3;s=Old"), Value: []byte("urn:old")}); err != nil {
		t.Fatal(err)
	}
	if uri, ok := (nsPins{a: a, source: "line1", endpoint: "opc.tcp://127.0.0.1:1"}).NamespacePin("ns=3;s=Old"); !ok || uri != "urn:old" {
		t.Errorf("an older pin: %q, %v", uri, ok)
	}
	if uri, ok := (nsPins{a: a, source: "line1", endpoint: "OPC.TCP://127.0.0.1:1/"}).NamespacePin("ns=3;s=Old"); !ok || uri != "urn:old" {
		t.Errorf("the same endpoint written otherwise: %q, %v", uri, ok)
	}
	if uri, ok := (nsPins{a: a, source: "line1", endpoint: "opc.tcp://10.0.0.9:4840"}).NamespacePin("ns=3;s=Old"); ok {
		t.Errorf("an older pin (%s), now kept with its endpoint, is used at another one", uri)
	}
	// What validate --opcua reads: the same answers, without pinning.
	if err := buf.PutMeta(context.Background(), buffer.KV{Key: nsPinKey("line2", "ns=4;s=Legacy/A"), Value: []byte("urn:legacy")}); err != nil {
		t.Fatal(err)
	}
	all, err := NamespacePinsIn(buf)
	if err != nil {
		t.Fatal(err)
	}
	kept := KeptPins(all, "line1", "OPC.TCP://10.0.0.9:4840/")
	for node, want := range map[string]string{"ns=2;s=Good": "urn:plant-b", "ns=3;s=Old": "", "ns=4;s=Legacy/A": ""} {
		if uri, ok := kept.NamespacePin(node); uri != want || ok != (want != "") {
			t.Errorf("kept pin of line1 %s = %q, %v; want %q", node, uri, ok, want)
		}
	}
	if uri, ok := KeptPins(all, "line2", "opc.tcp://anywhere:4840").NamespacePin("ns=4;s=Legacy/A"); !ok || uri != "urn:legacy" {
		t.Errorf("a pin without its endpoint holds for any: %q, %v", uri, ok)
	}
	before := len(all)
	if err := kept.SetNamespacePin("ns=9;s=New", "urn:x"); err != nil {
		t.Fatal(err)
	}
	if all, _ = NamespacePinsIn(buf); len(all) != before {
		t.Errorf("KeptPins pinned: %d pins, want %d", len(all), before)
	}
}

// Stops queued while the agent was down, on a topic without
// timestamp_field, arrive in one burst: each still becomes its own downtime
// record (they are keyed by their start's millisecond, and the burst's
// receive times are made distinct), not a few merged ones.
func TestBacklogOfStopsWithoutSourceTimes(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, running: { mqtt: { broker: b, topic: m1/state, field: running } } }]
`)
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	now := time.Now()
	var batch []connectors.Sample
	for i := range 101 {
		batch = append(batch, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "m1/state",
			Payload: []byte(fmt.Sprintf(`{"running":%t}`, i%2 == 0)), Good: true, ReceiveTime: now})
	}
	a.commitSamples(context.Background(), batch)
	recs, err := buf.Peek(buffer.LaneEvents, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[int64]bool{} // the line's external id is keyed by its start
	for _, r := range recs {
		ev, err := decodeEvent(r)
		if err != nil {
			t.Fatal(err)
		}
		starts[ev.Start] = true
	}
	if len(recs) != 50 || len(starts) != 50 {
		t.Errorf("50 stops delivered in one burst made %d downtime records with %d distinct starts", len(recs), len(starts))
	}
	// The machine's last value came now, not at the burst's last stamp,
	// 100 ms ahead (status showed no age at all until time caught up).
	if got := a.lastSample["m1"]; !got.Equal(now) {
		t.Errorf("last sample at %v, want the receive time %v", got, now)
	}
}

// A stop at the end of a burst on one topic without timestamp_field: its
// receive time is moved 3 s ahead (the burst's stamps made distinct), its
// boot-clock reading with it — not taken for a step of this box's clock
// (mapping.BoxStep), whose correction would move the line and log a step
// that never was.
func TestBurstStampsAreNoStepOfThisBoxsClock(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, running: { mqtt: { broker: b, topic: m1/state, field: running } } }]
`)
	logs := &agenttest.SyncBuffer{}
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	now := time.Now().Round(0)
	seen := connectors.Seen{Boot: "boot", Up: time.Hour}
	sample := func(running bool, at time.Time, seen connectors.Seen) connectors.Sample {
		return connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "m1/state",
			Payload: []byte(fmt.Sprintf(`{"running":%t}`, running)), Good: true, ReceiveTime: at, Seen: seen}
	}
	var batch []connectors.Sample
	for range 3000 {
		batch = append(batch, sample(true, now, seen))
	}
	batch = append(batch, sample(false, now, seen))
	a.commitSamples(context.Background(), batch)
	later := seen
	later.Up += 10 * time.Second
	a.commitSamples(context.Background(), []connectors.Sample{sample(true, now.Add(10*time.Second), later)})
	recs, err := buf.Peek(buffer.LaneEvents, 0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	ev, err := decodeEvent(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if start := time.UnixMilli(ev.Start); start.Sub(now) < 2*time.Second || ev.End != now.Add(10*time.Second).UnixMilli() {
		t.Errorf("line %v – %v, want it from the stop's stamp (%v ahead) to the run", start, time.UnixMilli(ev.End), start.Sub(now))
	}
	if strings.Contains(logs.String(), "this box's clock was stepped") {
		t.Errorf("a burst's stamps taken for a step of this box's clock:\n%s", logs)
	}
}

// A source's last error stays in status after it reconnected, with how long
// ago it happened: history next to "connected", not a current fault.
func TestSourceLastErrorHasItsAge(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, running: { mqtt: { broker: b, topic: m1/state, field: running } } }]
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	a.fwd = newForwarder(a)
	a.opened.Store(true)
	at := time.Now().Add(-90 * time.Second)
	a.sources = []*sourceHandle{{name: "b", kind: connectors.KindMQTT,
		state:     func() connectors.State { return connectors.StateConnected },
		sessions:  func() uint64 { return 2 },
		lastErr:   func() string { return "connection refused" },
		lastErrAt: func() time.Time { return at },
	}}
	src := a.Status().Sources[0]
	if src.LastError != "connection refused" || src.LastErrorAgeSeconds < 89 || src.LastErrorAgeSeconds > 120 {
		t.Errorf("source status %+v, want its last error 90 s old", src)
	}
}

// agentWithBuffer is an agent of cfg, not started, with its buffer file
// open (closed at the end of the test): samples can be committed and
// status read without sources or Odoo.
func agentWithBuffer(t *testing.T, cfg *config.Config, log *slog.Logger) (*Agent, *buffer.Queue) {
	t.Helper()
	a, err := New(cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	a.buf = buf
	return a, buf
}

func TestMachineChanges(t *testing.T) {
	cur := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: b, topic: m1, field: good } }, running: { mqtt: { broker: b, topic: m1, field: run } } }
  - { id: m2, workcenter: W2, good_count: { mqtt: { broker: b, topic: m2, field: good } } }
  - { id: m3, workcenter: W3, good_count: { mqtt: { broker: b, topic: m3, field: good } } }
`)
	next := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: b, topic: m1, field: good, timestamp_field: ts } } }
  - { id: m2, workcenter: W2, good_count: { mqtt: { broker: b, topic: gw/m2, field: good } } }
  - { id: m4, workcenter: W4, good_count: { mqtt: { broker: b, topic: m4, field: good } } }
`)
	added, removed, changed, rebased := machineChanges(cur, next)
	got := fmt.Sprint(added, removed, changed, rebased)
	if want := "[m4] [m3] [m1 good_count m1 running m2 good_count] [m2 good_count]"; got != want {
		t.Errorf("changes %s, want %s", got, want)
	}
	// The broker renamed, its URL written otherwise: the same counters.
	renamed := testConfig(t, `mqtt: [{ name: plant-broker, url: "TCP://127.0.0.1:1/", client_id: pe }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: plant-broker, topic: m1, field: good, timestamp_field: ts } } }
  - { id: m2, workcenter: W2, good_count: { mqtt: { broker: plant-broker, topic: gw/m2, field: good } } }
  - { id: m4, workcenter: W4, good_count: { mqtt: { broker: plant-broker, topic: m4, field: good } } }
`)
	_, _, changed, rebased = machineChanges(next, renamed)
	if got := fmt.Sprint(changed, rebased); got != "[m1 good_count m2 good_count m4 good_count] []" {
		t.Errorf("broker renamed: changes %s, want 3 signals changed, none rebased", got)
	}
}

// A machine whose running value turns bad (a sensor failure, an uncertain
// value) while its source stays connected shows unknown, with the state
// last read and why: it may have stopped since (it showed running, with
// the bad quality only in its error).
func TestBadRunningValueShowsUnknown(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines:
  - { id: m1, workcenter: W1, running: { opcua: { server: line1, node: "ns=2;s=Run" } } }
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	a.fwd = newForwarder(a)
	a.opened.Store(true)
	connected := func() connectors.State { return connectors.StateConnected }
	a.sources = []*sourceHandle{{name: "line1", kind: connectors.KindOPCUA, state: connected,
		sessions: func() uint64 { return 1 }, lastErr: func() string { return "" }}}
	sample := func(good bool, v any) {
		s := connectors.Sample{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Run",
			Value: v, Good: good, ReceiveTime: time.Now()}
		if !good {
			s.Quality = "BadSensorFailure"
		}
		a.commitSamples(context.Background(), []connectors.Sample{s})
	}
	m1 := func() MachineStatus { return a.Status().Machines[0] }
	sample(true, true)
	if m := m1(); m.State != "running" || m.LastKnownState != "" {
		t.Fatalf("running: %+v", m)
	}
	sample(false, nil)
	if m := m1(); m.State != "unknown" || m.LastKnownState != "running" || m.UnknownBecause != "bad quality" || !strings.Contains(m.Error, "BadSensorFailure") {
		t.Errorf("running value bad: %+v", m)
	}
	sample(true, false)
	if m := m1(); m.State != "stopped" || m.LastKnownState != "" {
		t.Errorf("good again, stopped: %+v", m)
	}
	// The server refuses the node (restarted with its namespace gone): its
	// last value is of bad quality too, but the refusal is why (the PEERS
	// audit: "bad or uncertain quality" shown).
	sample(true, true)
	a.sources[0].refused = func() []opcua.RefusedNode {
		return []opcua.RefusedNode{{Node: "ns=2;s=Run", Status: "BadNodeIdUnknown"}}
	}
	sample(false, nil)
	if m := m1(); m.State != "unknown" || m.LastKnownState != "running" || m.UnknownBecause != "refused" || !strings.Contains(m.Error, "refuses node") {
		t.Errorf("running node refused: %+v", m)
	}
}

// A 16-bit counter can never climb 100,000 pieces in one reading: a
// quarter of its range is its large jump (the probe saw 59,900 pieces
// from 100 -> 60000 counted without a word).
func TestLargeJumpOfASmallCounterIsLogged(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines:
  - { id: m1, workcenter: W1, good_count: { opcua: { server: line1, node: "ns=2;s=Good" }, rollover: 65536 } }
`)
	var logs agenttest.SyncBuffer
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Now()
	sample := func(v int64, at time.Time) {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Value: v, Good: true, SourceTime: at, ReceiveTime: time.Now()}})
	}
	sample(100, now)
	sample(16000, now.Add(time.Second))
	if strings.Contains(logs.String(), "jumped") {
		t.Fatalf("15,900 pieces (below a quarter of the range) logged as a jump:\n%s", logs.String())
	}
	sample(60000, now.Add(2*time.Second))
	if !strings.Contains(logs.String(), "counter jumped by a large amount in one reading") || !strings.Contains(logs.String(), "pieces=44000") {
		t.Errorf("44,000 pieces of a 16-bit counter not logged as a jump:\n%s", logs.String())
	}
}

// A counter node whose value changes type (a PLC program or gateway
// change) is logged once, whether or not its value can still be read (the
// probe's "9.0" text was counted without a word).
func TestValueTypeChangeIsLogged(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines:
  - { id: m1, workcenter: W1, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }
`)
	var logs agenttest.SyncBuffer
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	sample := func(v any, typ string) {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good",
			Value: v, DataType: typ, Good: true, ReceiveTime: time.Now()}})
	}
	sample(int64(5), "Int16")
	sample(int64(6), "Int16")
	if strings.Contains(logs.String(), "data type changed") {
		t.Fatalf("logged without a change:\n%s", logs.String())
	}
	// Int16 to Int32, both int64 as values (the uatypes probe: not seen).
	sample(int64(7), "Int32")
	if !strings.Contains(logs.String(), "data type changed") || !strings.Contains(logs.String(), "was=Int16 now=Int32") {
		t.Errorf("Int16 to Int32 not logged:\n%s", logs.String())
	}
}

// A machine whose messages cannot be used (not JSON, the field missing, a
// value that is not one) shows no fresh last sample: last_sample_age was
// refreshed by every message of its topic, and a machine whose gateway
// sent garbage looked fed while its counter stood still.
func TestLastSampleOnlyForUsableValues(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1/count, field: good } } }]
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	at := time.Now()
	sample := func(payload string) connectors.Sample {
		at = at.Add(time.Second)
		return connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "m1/count", Payload: []byte(payload), Good: true, ReceiveTime: at}
	}
	a.commitSamples(context.Background(), []connectors.Sample{sample(`{"good": 5}`)})
	good := at
	a.commitSamples(context.Background(), []connectors.Sample{sample(`not json`), sample(`{"bad": 1}`), sample(`{"good": "n/a"}`)})
	if got := a.lastSample["m1"]; !got.Equal(good) {
		t.Errorf("last sample at %v after three unusable messages, want the last usable one's %v", got, good)
	}
	a.commitSamples(context.Background(), []connectors.Sample{sample(`{"good": 7}`)})
	if got := a.lastSample["m1"]; !got.Equal(at) {
		t.Errorf("last sample at %v, want %v", got, at)
	}
}

// A value one field of a shared topic cannot use shows on the signal that
// reads that field, and only on the machine that has it: a scrap field's
// "4 kg" was shown as "good_count: … field \"c.scrap\" …" — the first
// signal of the topic — and on every machine reading the topic, whose
// values were fine (the signals51 probe). A payload no signal can read
// (not JSON) still shows on every machine of the topic.
func TestUnusableFieldShowsOnItsSignal(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: b, topic: line, field: c.good } }, scrap_count: { mqtt: { broker: b, topic: line, field: c.scrap } } }
  - { id: m2, workcenter: W2, running: { mqtt: { broker: b, topic: line, field: run } } }
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	a.fwd = newForwarder(a) // not started: status as of an agent that cannot reach Odoo
	a.opened.Store(true)
	send := func(p string) {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: "line",
			Payload: []byte(p), Good: true, ReceiveTime: time.Now()}})
	}
	machineErr := func(id string) string {
		for _, m := range a.Status().Machines {
			if m.ID == id {
				return m.Error
			}
		}
		t.Fatalf("no machine %s in status", id)
		return ""
	}
	send(`{"c": {"good": 5, "scrap": 1}, "run": true}`)
	send(`{"c": {"good": 6, "scrap": "4 kg"}, "run": true}`)
	if e := machineErr("m1"); !strings.HasPrefix(e, "scrap_count: b sent a value that cannot be used") || !strings.Contains(e, "4 kg") {
		t.Errorf("m1 error after an unusable scrap value: %q, want it on scrap_count", e)
	}
	if e := machineErr("m2"); e != "" {
		t.Errorf("m2 error after another machine's unusable value: %q, want none", e)
	}
	send(`{"c": {"good": 7, "scrap": 2}, "run": "maybe"}`)
	if e := machineErr("m2"); !strings.HasPrefix(e, "running: b sent a value that cannot be used") {
		t.Errorf("m2 error after an unusable run value: %q", e)
	}
	if e := machineErr("m1"); e != "" {
		t.Errorf("m1 error after another machine's unusable value: %q, want none", e)
	}
	send(`not json`)
	for _, id := range []string{"m1", "m2"} {
		if e := machineErr(id); !strings.Contains(e, "sent a value that cannot be used") {
			t.Errorf("%s error after a payload no signal can read: %q", id, e)
		}
	}
}
