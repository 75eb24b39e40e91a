package mqtt

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors"
)

// A broker resending a kept session's unacknowledged messages after a
// reconnect sends them with DUP and their packet identifiers (MQTT 3.1.1
// §4.4): the agent tells a resent copy of a message it took by them.
// Checked on the embedded mochi broker and on Mosquitto. A message
// published while the connector was away comes with an identifier of its
// own (mochi marks it DUP as well).
func TestResentMessagesKeepTheirPacketIDs(t *testing.T) {
	t.Run("mochi", func(t *testing.T) { resentKeepIDs(t, startMochi(t, "tcp", nil, nil)) })
	t.Run("mosquitto", func(t *testing.T) { resentKeepIDs(t, newMosquitto(t).url("tcp")) })
}

func resentKeepIDs(t *testing.T, url string) {
	sink := make(chanSink, 100)
	cfg := Config{URL: url, ClientID: "packetids", Topics: []string{"ids/#"}}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, url, nil)
	first := map[string]uint16{}
	for i := range 3 {
		p.pub(t, "ids/x", fmt.Appendf(nil, "m%d", i))
	}
	for range 3 {
		s := sink.next(t) // never acknowledged
		if s.PacketID == 0 || s.Duplicate {
			t.Fatalf("first delivery %q: packet id %d, DUP %v", s.Payload, s.PacketID, s.Duplicate)
		}
		first[string(s.Payload)] = s.PacketID
	}
	r.stop(t)
	p.pub(t, "ids/x", []byte("new"))
	start(t, cfg, sink) // stopped at the test's end (its Cleanup)
	got := map[string]connectors.Sample{}
	for range 4 {
		s := sink.next(t)
		got[string(s.Payload)] = s
		s.Done()
	}
	for payload, id := range first {
		s, ok := got[payload]
		if !ok || !s.Duplicate || s.PacketID != id {
			t.Errorf("%s resent: %v, DUP %v, packet id %d, want %d", payload, ok, s.Duplicate, s.PacketID, id)
		}
	}
	if s := got["new"]; s.PacketID == 0 || s.PacketID == first["m0"] || s.PacketID == first["m1"] || s.PacketID == first["m2"] {
		t.Errorf("new message: packet id %d, one of the unacknowledged %v", s.PacketID, first)
	} else {
		t.Logf("new message: packet id %d, DUP %v", s.PacketID, s.Duplicate)
	}
	sink.none(t, 100*time.Millisecond)
}

// Mosquitto restarted without persistence forgets the session and numbers
// the messages of the new one from 1 again: an identifier and payload the
// agent recorded in the old session come again on a new message. That
// message, received and not stored when the agent stopped (killed before
// its commit), is resent with DUP at the next connect; it is a stop not
// taken, and must be taken (the review of the packet-id dedupe: taken for
// a copy of the old session's stop, and lost). The connection numbers
// (Sample.Epoch) tell the two apart: the record is from two connections
// back. The agent's part (the last number kept, EpochBase) is played here.
func TestMosquittoIdentifierGivenAgainAfterARestartIsNoCopy(t *testing.T) {
	mq := newMosquitto(t)
	url := mq.url("tcp")
	cfgFile, err := config.Parse("test.yaml", []byte(`site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: "`+url+`", client_id: epochs }
machines:
  - id: m1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: m1/run } }
    good_count: { mqtt: { broker: b, topic: m1/good } }
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mapping.New(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st := mapping.NewState()
	apply := func(s connectors.Sample) []mapping.Event {
		t.Helper()
		evs, _, err := m.Apply(st, s)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	sink := make(chanSink, 10)
	cfg := Config{Name: "b", URL: url, ClientID: "epochs", Topics: []string{"m1/run", "m1/good"}, KeepAlive: 2 * time.Second}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, url, nil)
	for _, v := range []string{"1", "0", "1"} { // identifiers 1, 2, 3: a stop and its run
		p.pub(t, "m1/run", []byte(v))
		s := sink.next(t)
		apply(s)
		s.Done()
	}

	mq.kill()
	waitFor(t, "connection loss noticed", func() bool { return r.State() != connectors.StateConnected })
	mq.start()
	waitConnected(t, r, 2)
	p = newPublisher(t, url, nil)
	p.pub(t, "m1/good", []byte("10")) // identifier 1 of the new session
	s := sink.next(t)
	apply(s)
	s.Done()
	p.pub(t, "m1/run", []byte("0")) // a new stop, identifier 2 as the old stop's
	s = sink.next(t)
	if s.PacketID != 2 || s.Duplicate || s.Epoch != 2 {
		t.Fatalf("the new stop: packet id %d, DUP %v, connection %d; want 2, false, 2", s.PacketID, s.Duplicate, s.Epoch)
	}
	r.stop(t) // the agent stopped before storing it: never acknowledged

	cfg.EpochBase = 2 // the agent's last connection number, kept in its buffer
	start(t, cfg, sink)
	s = sink.next(t)
	if s.PacketID != 2 || !s.Duplicate || string(s.Payload) != "0" {
		t.Fatalf("resent: %s %q packet id %d DUP %v; want the stop, 2, DUP", s.Address, s.Payload, s.PacketID, s.Duplicate)
	}
	evs := apply(s)
	s.Done()
	if !slices.ContainsFunc(evs, func(e mapping.Event) bool { return e.Kind == mapping.EventStopped }) {
		t.Errorf("the stop resent with an identifier the old session gave the old stop: %+v, want it taken", evs)
	}
}

// Mosquitto with persistence, stopped (it saves its sessions) and started
// again while the agent was away: the messages the agent had stored but
// whose PUBACKs never reached it (killed after its commit) come again at the
// next connect with DUP and their identifiers, and are known for copies of
// messages taken in the connection before: no second stop.
func TestMosquittoPersistentRestartResendsCopiesKnown(t *testing.T) {
	mq := newMosquitto(t, "persistence true", "persistence_location "+t.TempDir()+"/")
	url := mq.url("tcp")
	cfgFile, err := config.Parse("test.yaml", []byte(`site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: "`+url+`", client_id: kept }
machines:
  - id: m1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: m1/run } }
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mapping.New(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st := mapping.NewState()
	var events []mapping.Event
	apply := func(s connectors.Sample) {
		t.Helper()
		evs, _, err := m.Apply(st, s)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, evs...)
	}
	sink := make(chanSink, 10)
	cfg := Config{Name: "b", URL: url, ClientID: "kept", Topics: []string{"m1/run"}, KeepAlive: 2 * time.Second}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, url, nil)
	ids := map[uint16]bool{}
	for _, v := range []string{"0", "1"} { // a stop and its run, stored, never acknowledged
		p.pub(t, "m1/run", []byte(v))
		s := sink.next(t)
		apply(s)
		ids[s.PacketID] = true
	}
	r.stop(t)
	if err := mq.cmd.Process.Signal(syscall.SIGTERM); err != nil { // saves its database, and exits
		t.Fatal(err)
	}
	<-mq.done
	mq.cmd = nil
	mq.start()

	stops := func() (n int) {
		for _, e := range events {
			if e.Kind == mapping.EventStopped {
				n++
			}
		}
		return n
	}
	if n := stops(); n != 1 {
		t.Fatalf("%d stops taken before the restart, want 1", n)
	}
	cfg.EpochBase = 1 // the agent's last connection number
	start(t, cfg, sink)
	for range 2 {
		s := sink.next(t)
		if !s.Duplicate || !ids[s.PacketID] {
			t.Errorf("after the restart: %q packet id %d DUP %v, want the stop or the run resent (%v)", s.Payload, s.PacketID, s.Duplicate, ids)
		}
		apply(s)
		s.Done()
	}
	if n := stops(); n != 1 {
		t.Errorf("%d stops taken, want 1: the resent stop was taken again", n)
	}
}
