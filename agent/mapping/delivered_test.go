package mapping

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// noteDelivered: a DUP is a resent copy only when its packet identifier and
// payload are those of a message taken on its topic; an identifier given
// again to another message forgets the earlier one.
func TestNoteDeliveredTellsResentCopies(t *testing.T) {
	var ms MachineState
	msg := func(id uint16, payload string, dup bool) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: "line/state", PacketID: id, Payload: []byte(payload), Duplicate: dup, Good: true, ReceiveTime: time.Now()}
	}
	steps := []struct {
		s            connectors.Sample
		again, store bool
	}{
		{msg(7, `{"run":false}`, false), false, false}, // (stored with its effect, or the next write)
		{msg(8, `{"run":true}`, false), false, false},
		{msg(7, `{"run":false}`, true), true, false},   // resent copy
		{msg(8, `{"run":true}`, true), true, false},    // resent copy
		{msg(9, `{"run":false}`, true), false, false},  // a DUP not taken before: new
		{msg(8, `{"run":false}`, true), false, false},  // same id, other payload: new
		{msg(8, `{"run":true}`, true), false, false},   // 8 was given again: the old one is forgotten
		{msg(0, `{"run":true}`, true), false, false},   // QoS 0: no identifier, nothing told
		{msg(7, `{"run":false}`, false), false, false}, // not DUP: always taken
	}
	for i, st := range steps {
		again, store := ms.noteDelivered(st.s)
		if again != st.again || store != st.store {
			t.Errorf("step %d (id %d %s dup %v): again %v store %v, want %v %v", i, st.s.PacketID, st.s.Payload, st.s.Duplicate, again, store, st.again, st.store)
		}
	}
	for i := range deliveredKept + 10 {
		ms.noteDelivered(msg(uint16(100+i), "x", false))
	}
	if n := len(ms.Delivered["b line/state"]); n != deliveredKept {
		t.Errorf("%d kept, want %d", n, deliveredKept)
	}
}

// A DUP is a copy only of a message recorded in its connection or the one
// before (Sample.Epoch): the broker resends what it holds unacknowledged at
// every connect, and an identifier seen two connections back may have
// been given to another message since (mochi numbers each connection's
// messages from 1; a broker that lost the session does too). A copy
// recognised is recorded anew at its connection, for the next one.
func TestNoteDeliveredOnlyFromTheConnectionBefore(t *testing.T) {
	var ms MachineState
	msg := func(epoch uint64, id uint16, payload string, dup bool) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: "line/run", Epoch: epoch, PacketID: id, Payload: []byte(payload), Duplicate: dup, Good: true, ReceiveTime: time.Now()}
	}
	steps := []struct {
		s            connectors.Sample
		again, store bool
	}{
		{msg(5, 1, "0", false), false, false},
		{msg(5, 2, "1", false), false, false},
		{msg(6, 1, "0", true), true, true},   // resent at the next connect: a copy, recorded at 6 (stored)
		{msg(7, 1, "0", true), true, true},   // its PUBACK lost again: still a copy
		{msg(7, 2, "1", true), false, false}, // recorded at 5, two connections back: a new message
		{msg(7, 2, "1", true), true, false},  // and now that one's copy, in its connection
		{msg(9, 1, "0", true), false, false}, // 7 to 9: taken
		{msg(8, 1, "0", true), false, false}, // a record of a later connection is no original either
	}
	for i, st := range steps {
		again, store := ms.noteDelivered(st.s)
		if again != st.again || store != st.store {
			t.Errorf("step %d (epoch %d id %d %s dup %v): again %v store %v, want %v %v", i, st.s.Epoch, st.s.PacketID, st.s.Payload, st.s.Duplicate, again, store, st.again, st.store)
		}
	}
	// Records of connections before the last one are let go.
	if n := len(ms.Delivered["b line/run"]); n != 1 {
		t.Errorf("%d records kept, want 1 (%v)", n, ms.Delivered["b line/run"])
	}
	// A record kept by the version without connection numbers ("id:digest")
	// is no original of anything.
	old := MachineState{Delivered: map[string][]string{}}
	old.noteDelivered(msg(0, 4, "0", false))
	legacy := strings.TrimPrefix(old.Delivered["b line/run"][0], "0:")
	for _, epoch := range []uint64{0, 1} {
		ms2 := MachineState{Delivered: map[string][]string{"b line/run": {legacy}}}
		if again, _ := ms2.noteDelivered(msg(epoch, 4, "0", true)); again {
			t.Errorf("epoch %d: a DUP taken for a copy of a record without a connection number", epoch)
		}
	}
}

// What connectors/mqtt measured on Mosquitto, through the mapper: the
// samples as they came (connection number, packet identifier, DUP,
// payload). Restarted without persistence, Mosquitto gave a new stop the
// old stop's identifier; resent with DUP two connections after the old one
// was taken, it is a stop (TestMosquittoIdentifierGivenAgainAfterARestartIsNoCopy).
// Restarted with persistence, the stop and run it resent with DUP in the
// connection after are copies: one stop (TestMosquittoPersistentRestartResendsCopiesKnown).
func TestMosquittoSequencesThroughTheMapper(t *testing.T) {
	t.Run("restarted without persistence", func(t *testing.T) {
		m, st := newTestMapper(t, replayConfig), NewState()
		if n := replayStops(t, m, st, replayMsg(1, "m1/run", 1, "1", false), replayMsg(1, "m1/run", 2, "0", false), replayMsg(1, "m1/run", 3, "1", false),
			replayMsg(2, "m1/good", 1, "10", false)); n != 1 {
			t.Fatalf("%d stops before the restart, want 1", n)
		}
		// The new stop of connection 2 (identifier 2, as the old stop's)
		// was never stored; resent in connection 3 it is taken.
		if n := replayStops(t, m, st, replayMsg(3, "m1/run", 2, "0", true)); n != 1 {
			t.Errorf("the new stop resent with the old stop's identifier: %d stops, want 1", n)
		}
	})
	t.Run("restarted with persistence", func(t *testing.T) {
		m, st := newTestMapper(t, replayConfig), NewState()
		if n := replayStops(t, m, st, replayMsg(1, "m1/run", 1, "1", false), replayMsg(1, "m1/run", 2, "0", false), replayMsg(1, "m1/run", 3, "1", false)); n != 1 {
			t.Fatalf("%d stops before the restart, want 1", n)
		}
		if n := replayStops(t, m, st, replayMsg(2, "m1/run", 2, "0", true), replayMsg(2, "m1/run", 3, "1", true)); n != 0 {
			t.Errorf("the stop and run resent in the connection after: %d stops taken again, want 0", n)
		}
	})
}

// What connectors/mqtt measured when a connection dropped while the
// copies it brought waited in the source's queue
// (TestCopyWaitingWhenItsConnectionDropsIsHandedOver), through the
// mapper: a stop and its run taken in connection 1 and never acknowledged,
// their copies handed over from connection 2, and again from connection 3:
// one stop. Had connection 2's copies been dropped, connection 3's would be
// two connections after the originals, and the stop taken again.
func TestCopiesOfEveryConnectionThroughTheMapper(t *testing.T) {
	conn := func(epoch uint64, dup bool) []connectors.Sample {
		return []connectors.Sample{replayMsg(epoch, "m1/good", 1, "5", dup), replayMsg(epoch, "m1/run", 2, "0", dup), replayMsg(epoch, "m1/run", 3, "1", dup)}
	}
	m, st := newTestMapper(t, replayConfig), NewState()
	if n := replayStops(t, m, st, slices.Concat(conn(1, false), conn(2, true), conn(3, true))...); n != 1 {
		t.Errorf("%d stops, want 1", n)
	}
}

// replayConfig is a machine whose run state and good count come over MQTT
// without a source time: what the replays of measured broker sequences map.
const replayConfig = `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /k }
mqtt:
  - { name: b, url: "tcp://127.0.0.1:1883", client_id: replay }
machines:
  - id: m1
    workcenter: WC1
    running: { mqtt: { broker: b, topic: m1/run } }
    good_count: { mqtt: { broker: b, topic: m1/good } }
`

// replayMsg is an MQTT sample as a broker delivered it: its connection
// number, packet identifier, payload and DUP.
func replayMsg(epoch uint64, topic string, id uint16, payload string, dup bool) connectors.Sample {
	return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: topic, Epoch: epoch, PacketID: id,
		Payload: []byte(payload), Duplicate: dup, Good: true, ReceiveTime: time.Now()}
}

// replayStops applies ss in order and counts the stops they make.
func replayStops(t *testing.T, m *Mapper, st *State, ss ...connectors.Sample) (n int) {
	t.Helper()
	for _, s := range ss {
		evs, _, err := m.Apply(st, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == EventStopped {
				n++
			}
		}
	}
	return n
}
