package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// noteRecent: a retained copy resent in a kept session is seen when its
// topic carried it before; on a topic the machine has no record of, while
// it has records of others (its state topic changed in the configuration,
// subscribed first now), it is news. With no record of any topic and a run
// state (a file of a version that kept no records) it still counts as seen.
func TestNoteRecentTakesTheFirstCopyOfANewTopic(t *testing.T) {
	msg := func(topic, payload string, resent bool) connectors.Sample {
		return connectors.Sample{Kind: connectors.KindMQTT, Source: "b", Address: topic, Payload: []byte(payload), Initial: true, Resent: resent, Good: true, ReceiveTime: time.Now()}
	}
	run := true
	var ms MachineState
	ms.Running = &run
	if seen, _ := ms.noteRecent(msg("line/old", `{"run":true}`, true)); !seen {
		t.Error("a resent copy with no record at all, the machine's run state known (an older file): want it seen")
	}
	ms = MachineState{Running: &run}
	ms.noteRecent(msg("line/old", `{"run":true}`, false))
	if seen, _ := ms.noteRecent(msg("line/old", `{"run":true}`, true)); !seen {
		t.Error("the old topic's copy resent: want it seen")
	}
	if seen, _ := ms.noteRecent(msg("line/new", `{"run":false}`, true)); seen {
		t.Error("the first copy of a topic new to the machine, in a kept session: taken for one seen")
	}
	if seen, _ := ms.noteRecent(msg("line/new", `{"run":false}`, true)); !seen {
		t.Error("the new topic's copy resent again: want it seen")
	}
	// The source renamed, its session kept: the topic's records under the
	// old name are its own.
	renamed := msg("line/new", `{"run":false}`, true)
	renamed.Source = "b2"
	if seen, _ := ms.noteRecent(renamed); !seen {
		t.Error("a copy the topic carried under the source's old name: want it seen")
	}
	renamed.Payload = []byte(`{"run":true,"n":2}`)
	if seen, _ := ms.noteRecent(renamed); seen {
		t.Error("a copy the topic never carried, under the source's new name: taken for one seen")
	}
}
