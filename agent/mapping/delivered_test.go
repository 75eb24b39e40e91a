package mapping

import (
	"testing"

	"github.com/plantedge/plantedge/connectors"
)

// noteDelivered: a DUP is a resent copy only when its packet identifier and
// payload are those of a message taken on its topic; an identifier given
// again to another message forgets the earlier one.
func TestNoteDeliveredTellsResentCopies(t *testing.T) {
	var ms MachineState
	msg := func(id uint16, payload string, dup bool) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: "line/state", PacketID: id, Payload: []byte(payload), Duplicate: dup}
	}
	steps := []struct {
		s            connectors.Sample
		again, noted bool
	}{
		{msg(7, `{"run":false}`, false), false, true},
		{msg(8, `{"run":true}`, false), false, true},
		{msg(7, `{"run":false}`, true), true, false},  // resent copy
		{msg(8, `{"run":true}`, true), true, false},   // resent copy
		{msg(9, `{"run":false}`, true), false, true},  // a DUP not taken before: new
		{msg(8, `{"run":false}`, true), false, true},  // same id, other payload: new
		{msg(8, `{"run":true}`, true), false, true},   // 8 was given again: the old one is forgotten
		{msg(0, `{"run":true}`, true), false, false},  // QoS 0: no identifier, nothing told
		{msg(7, `{"run":false}`, false), false, true}, // not DUP: always taken
	}
	for i, st := range steps {
		again, noted := ms.noteDelivered(st.s)
		if again != st.again || noted != st.noted {
			t.Errorf("step %d (id %d %s dup %v): again %v noted %v, want %v %v", i, st.s.PacketID, st.s.Payload, st.s.Duplicate, again, noted, st.again, st.noted)
		}
	}
	for i := range deliveredKept + 10 {
		ms.noteDelivered(msg(uint16(100+i), "x", false))
	}
	if n := len(ms.Delivered["b line/state"]); n != deliveredKept {
		t.Errorf("%d kept, want %d", n, deliveredKept)
	}
}
