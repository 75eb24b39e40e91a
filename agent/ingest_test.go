package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/sptest"
)

// Status counts a machine's pieces once their records are in the buffer,
// not before: a flush asked for on seeing them must find them there (the
// scrap-draft test saw the count, flushed, and the scrap arrived after the
// flushed round, to be gathered for 15 minutes). A batch whose append does
// not go through (the agent stopping) is not counted.
func TestStatusCountsWhatIsInTheBuffer(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1, field: good } }, scrap_count: { mqtt: { broker: b, topic: m1, field: scrap } } }]
`)
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	send := func(ctx context.Context, good, scrap int) {
		a.commitSamples(ctx, []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: "m1",
			Payload: fmt.Appendf(nil, `{"good":%d,"scrap":%d}`, good, scrap), Good: true, ReceiveTime: time.Now()}})
	}
	counted := func() totals {
		a.totalsMu.Lock()
		defer a.totalsMu.Unlock()
		return a.totals["m1"]
	}
	send(context.Background(), 100, 10) // the baseline
	send(context.Background(), 103, 14)
	if got := counted(); got != (totals{Good: 3, Scrap: 4}) {
		t.Fatalf("counted %+v, want 3 good and 4 scrap", got)
	}
	if recs, err := buf.Peek(buffer.LaneCounts, 0, 10); err != nil || len(recs) != 2 {
		t.Fatalf("%d count records in the buffer (%v), want 2", len(recs), err)
	}
	var mm machineMeta
	if b, err := buf.Meta(machineMetaKey("m1")); err != nil || json.Unmarshal(b, &mm) != nil || mm.Good != 3 || mm.Scrap != 4 {
		t.Fatalf("stored totals %+v (%v), want 3 good and 4 scrap", mm, err)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	send(stopped, 110, 20) // not appended
	if got := counted(); got != (totals{Good: 3, Scrap: 4}) {
		t.Errorf("counted %+v after a batch that is not in the buffer, want still 3 good and 4 scrap", got)
	}
	if n := buf.LastSeq(); n != 2 {
		t.Errorf("last sequence number %d, want 2", n)
	}
}

// A batch is acknowledged to its source only once its append went
// through. One whose append kept failing (a full disk) until the agent
// stopped is not: the broker gives it again to the next run, which writes
// it. Acknowledged, the broker would forget a value the buffer never held
// (a stop or a run missing from Odoo). A mutation audit found that no test
// asserted the acknowledgement itself, only what status counts.
func TestBatchNotAppendedIsNotAcknowledged(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1, field: good } }, running: { mqtt: { broker: b, topic: m1, field: run } } }]
`)
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	var acks atomic.Int32
	send := func(ctx context.Context, good int, run bool) {
		a.commitSamples(ctx, []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: "m1",
			Payload: fmt.Appendf(nil, `{"good":%d,"run":%t}`, good, run), Good: true, ReceiveTime: time.Now(),
			Ack: func() { acks.Add(1) }}})
	}
	send(context.Background(), 100, true) // the baseline
	send(context.Background(), 103, false)
	if n := acks.Load(); n != 2 {
		t.Fatalf("%d acknowledgements for 2 batches appended, want 2", n)
	}
	// Every append fails from now on (the buffer refuses them, as a full
	// disk does); the stop's deadline ends the retries.
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	stopping, cancel := context.WithCancel(context.Background())
	defer cancel()
	retried := make(chan struct{})
	go func() {
		defer close(retried)
		for a.writeFail.Load() == nil { // failing, shown, and retried
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	send(stopping, 110, true) // a run and 7 pieces, never written
	<-retried
	if n := acks.Load(); n != 2 {
		t.Errorf("%d acknowledgements after a batch whose append never went through, want still 2: the broker would not give it again", n)
	}
	if s, _ := a.machineState("m1"); s != "stopped" {
		t.Errorf("state %s after a run never written, want still stopped", s)
	}
}

// The run state status shows is the one stored in the buffer (with what
// the change wrote for Odoo, so a flush on seeing it finds that), and a
// restart shows what was stored.
func TestStatusShowsTheRunStateInTheBuffer(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, running: { mqtt: { broker: b, topic: m1, field: run } } }]
`)
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	send := func(ctx context.Context, run bool) {
		a.commitSamples(ctx, []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: "m1",
			Payload: fmt.Appendf(nil, `{"run":%t}`, run), Good: true, ReceiveTime: time.Now()}})
	}
	state := func() string {
		s, _ := a.machineState("m1")
		return s
	}
	if s := state(); s != "unknown" {
		t.Fatalf("state before any value: %s", s)
	}
	send(context.Background(), true)
	if s := state(); s != "running" {
		t.Fatalf("state after running: %s", s)
	}
	send(context.Background(), false)
	if s := state(); s != "stopped" {
		t.Fatalf("state after the stop: %s", s)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	send(stopped, true) // not appended
	if s := state(); s != "stopped" {
		t.Errorf("state after a restart that is not in the buffer: %s, want still stopped", s)
	}
	// What a restart shows: the stored state.
	b := &Agent{buf: buf, state: mapping.NewState(), totals: map[string]totals{}, shownRunning: map[string]bool{}}
	if err := b.loadMachineState(); err != nil {
		t.Fatal(err)
	}
	if s, _ := b.machineState("m1"); s != "stopped" {
		t.Errorf("state after a restart: %s, want stopped", s)
	}
}

// A message on a topic no machine maps (the broker session holds another
// client's subscriptions, or an earlier configuration's) is counted per
// source for status and logged, and changes nothing.
func TestStrayTopicCounted(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1, field: good } } }]
`)
	var logs agenttest.SyncBuffer
	a, buf := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, topic := range []string{"m1", "other-plant/m1", "other-plant/m2"} {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: topic,
			Payload: []byte(`{"good":5}`), Good: true, ReceiveTime: time.Now()}})
	}
	if sc := a.strays["b"]; sc.n != 2 || sc.last != "other-plant/m2" {
		t.Errorf("strays %+v, want 2, the last on other-plant/m2", sc)
	}
	if !strings.Contains(logs.String(), "message on a topic no machine maps") {
		t.Errorf("no log of the stray message:\n%s", logs.String())
	}
	if n := buf.LastSeq(); n != 0 {
		t.Errorf("%d records for a baseline and stray messages", n)
	}
}

// What is kept per source address is kept only for addresses a machine
// reads: stray topics come from outside and are many (the lifecycle
// review: 200,000 of them kept 25 MB of heap for the process's life), and
// a reload forgets the addresses it removed.
func TestPerAddressStateIsOfMappedAddressesOnly(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines:
  - { id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1, field: good } } }
  - { id: m2, workcenter: W2, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	now := time.Now()
	var batch []connectors.Sample
	for i := range 1000 {
		batch = append(batch, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: fmt.Sprintf("gw/dev-%d/telemetry", i),
			Payload: []byte(`{"good":5}`), Good: true, ReceiveTime: now})
	}
	batch = append(batch,
		connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "m1", Payload: []byte(`{"good":5}`), Good: true, ReceiveTime: now},
		connectors.Sample{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: int64(7), Quality: "Bad", ReceiveTime: now})
	a.commitSamples(context.Background(), batch)
	if sc := a.strays["b"]; sc.n != 1000 {
		t.Errorf("strays counted %d, want 1000", sc.n)
	}
	if len(a.lastStamp) != 2 || len(a.badQuality) != 1 {
		t.Fatalf("kept stamps of %d addresses and %d bad qualities, want 2 (the mapped ones) and 1", len(a.lastStamp), len(a.badQuality))
	}
	// A reload that removes m2 forgets its address.
	next := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: m1, field: good } } }]
`)
	m, err := mapping.New(next)
	if err != nil {
		t.Fatal(err)
	}
	prev := a.mapper.Load()
	a.mapper.Store(m)
	a.noteDroppedTopics(context.Background(), prev, func(s string) string { return s })
	if _, ok := a.lastStamp[sampleAddr{connectors.KindMQTT, "b", "m1"}]; !ok || len(a.lastStamp) != 1 || len(a.badQuality) != 0 {
		t.Errorf("after the reload: stamps %v, bad qualities %v; want m1's stamp only", a.lastStamp, a.badQuality)
	}
}

// A Sparkplug B edge node's subscription filter brings every topic under
// the node: its devices no signal reads, DEATHs, commands, and whatever
// else a client publishes there (a device id per serial number, a gateway
// gone wrong). Nothing is kept per topic for those: the probe of a year's
// run saw 200,000 such device topics keep 32 MB of heap until a reload.
func TestPerAddressStateOfSparkplugTopicsReadOnly(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: p1, workcenter: W, good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Good } } }
`)
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.DiscardHandler))
	now := time.Now()
	var batch []connectors.Sample
	sample := func(topic string, payload []byte) {
		batch = append(batch, connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: topic, Payload: payload, Good: true, ReceiveTime: now})
	}
	for i := range 300 {
		sample(fmt.Sprintf("spBv1.0/plant/DDATA/edge1/serial-%d", i), []byte{0xff, 0xff})
		sample(fmt.Sprintf("spBv1.0/plant/DDEATH/edge1/serial-%d", i), []byte{0xff, 0xff})
		sample(fmt.Sprintf("spBv1.0/plant/JUNK%d/edge1", i), []byte{0xff, 0xff})
	}
	sample("spBv1.0/plant/NCMD/edge1", []byte{0xff})
	sample("spBv1.0/plant/DDATA/edge1/press1", []byte{0x08, 0x01}) // the one read (a timestamp, no metrics)
	a.commitSamples(context.Background(), batch)
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if len(a.lastStamp) != 1 || len(a.unusable) != 0 || len(a.badQuality) != 0 {
		t.Fatalf("kept stamps of %d addresses, %d unusable and %d bad qualities, want 1 (the DDATA read) and none", len(a.lastStamp), len(a.unusable), len(a.badQuality))
	}
	if _, ok := a.lastStamp[sampleAddr{connectors.KindMQTT, "b", "spBv1.0/plant/DDATA/edge1/press1"}]; !ok {
		t.Errorf("stamps %v, want the DDATA read", a.lastStamp)
	}
}

// A Sparkplug seq gap is the edge node's (messages of it were lost), not a
// topic's: it is logged once a minute per edge node, whichever of its
// topics showed it (an edge node of a device per serial number on a lossy
// link logged a line per device; the probe of a year's run).
func TestSparkplugSeqGapLoggedPerEdgeNode(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: pe }]
machines:
  - { id: p1, workcenter: W, good_count: { mqtt: { broker: b, format: sparkplug_b, topic: spBv1.0/plant/DDATA/edge1/press1, field: Good } } }
`)
	var logs agenttest.SyncBuffer
	a, _ := agentWithBuffer(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Now()
	for i := range 50 {
		a.commitSamples(context.Background(), []connectors.Sample{{Source: "b", Kind: connectors.KindMQTT, Address: fmt.Sprintf("spBv1.0/plant/DDATA/edge1/serial-%d", i),
			Payload: sptest.Payload{Seq: (2 * i) % 256}.Encode(), Good: true, ReceiveTime: now}})
	}
	if n := strings.Count(logs.String(), "Sparkplug seq"); n != 1 {
		t.Errorf("%d log lines of seq gaps, want 1 (one edge node):\n%s", n, logs.String())
	}
}

// The Odoo database is its server and name: the scheme, a default port
// written out, the host's case and a trailing slash do not make another
// one; another host, port, path or database name does.
func TestOdooIdentity(t *testing.T) {
	id := func(url, db string) string {
		return odooIdentity(&config.Config{Odoo: config.Odoo{URL: url, Database: db}})
	}
	base := id("http://odoo.plant.local:8069", "prod")
	for _, same := range []string{"https://odoo.plant.local:8069", "http://ODOO.plant.local:8069/"} {
		if got := id(same, "prod"); got != base {
			t.Errorf("%s: %q, want %q", same, got, base)
		}
	}
	if a, b := id("http://odoo", "prod"), id("http://odoo:80/", "prod"); a != b {
		t.Errorf("default port: %q != %q", a, b)
	}
	for _, other := range [][2]string{{"http://odoo2.plant.local:8069", "prod"}, {"http://odoo.plant.local:8070", "prod"},
		{"http://odoo.plant.local:8069/odoo", "prod"}, {"http://odoo.plant.local:8069", "test"}} {
		if got := id(other[0], other[1]); got == base {
			t.Errorf("%v is taken for the same database", other)
		}
	}
}
