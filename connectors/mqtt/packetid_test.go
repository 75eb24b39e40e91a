package mqtt

import (
	"fmt"
	"testing"
	"time"

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
