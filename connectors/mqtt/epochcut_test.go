package mqtt

import (
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nettest"
)

// A stop and its run stored by the agent, whose PUBACKs never reached the
// broker (the agent killed after its commit), are resent with DUP at every
// connect until acknowledged. A connection the broker answers (CONNACK)
// but which is cut before its resends reach the agent counts as a
// connection (mochi numbers the messages of each connection anew, so it
// must), and the copies come two connections after their originals: the
// mapping takes them again (a second downtime line). Measured here on both
// brokers; docs/config.md (Counter rules) says so.
func TestCopyResentAfterAConnectionCutBeforeItsResendComesTwoConnectionsOn(t *testing.T) {
	t.Run("mochi", func(t *testing.T) { cutBeforeResend(t, startMochi(t, "tcp", nil, nil)) })
	t.Run("mosquitto", func(t *testing.T) { cutBeforeResend(t, newMosquitto(t).url("tcp")) })
}

func cutBeforeResend(t *testing.T, brokerURL string) {
	var cuts atomic.Int32 // connections still to cut right after their CONNACK
	take := func() bool {
		for {
			v := cuts.Load()
			if v <= 0 {
				return false
			}
			if cuts.CompareAndSwap(v, v-1) {
				return true
			}
		}
	}
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	down := func(dst, src net.Conn) {
		if !take() {
			pipe(dst, src)
			return
		}
		connack := make([]byte, 4) // MQTT 3.1.1: 0x20 0x02 flags code
		if _, err := io.ReadFull(src, connack); err == nil {
			_, _ = dst.Write(connack)
		}
		_ = dst.Close()
		_ = src.Close()
	}
	url := "tcp://" + nettest.PipeProxy(t, strings.TrimPrefix(brokerURL, "tcp://"), pipe, down)
	sink := make(chanSink, 10)
	cfg := Config{Name: "b", URL: url, ClientID: "cutresend", Topics: []string{"m1/run"}, KeepAlive: 2 * time.Second}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, brokerURL, nil)
	first := map[string]uint16{}
	for _, v := range []string{"0", "1"} { // a stop and its run: stored, never acknowledged
		p.pub(t, "m1/run", []byte(v))
		s := sink.next(t)
		first[v] = s.PacketID
	}
	r.stop(t) // killed after the commit, before the PUBACKs

	cuts.Store(1)
	cfg.EpochBase = 1   // the agent's last connection number, kept in its buffer
	start(t, cfg, sink) // stopped at the test's end
	for range 2 {
		s := sink.next(t)
		t.Logf("resent %q: packet id %d, DUP %v, connection %d", s.Payload, s.PacketID, s.Duplicate, s.Epoch)
		if !s.Duplicate || s.PacketID != first[string(s.Payload)] || s.Epoch != 3 {
			t.Errorf("%q: packet id %d DUP %v connection %d; want %d, DUP, 3", s.Payload, s.PacketID, s.Duplicate, s.Epoch, first[string(s.Payload)])
		}
		s.Done()
	}
	if n := cuts.Load(); n != 0 {
		t.Fatalf("%d connections left to cut: none was", n)
	}
	sink.none(t, 100*time.Millisecond)
}

// The same copies reach the source in a connection, but wait in its queue
// behind a message the agent is slow to take; the connection drops, and
// the next connect of the kept session resends them. A copy (DUP) received
// in a connection is handed over even so, with that connection's number:
// the mapping, which knows a copy only of a record of its connection or
// the one before, records it there, and knows the next connection's copy
// for one (agent/mapping TestCopiesOfEveryConnectionThroughTheMapper).
// Dropped at the next connect (before: "superseded"), the copies came
// only two connections after their originals, and the stop was taken
// again: a second downtime line.
func TestCopyWaitingWhenItsConnectionDropsIsHandedOver(t *testing.T) {
	t.Run("mochi", func(t *testing.T) { copyWaiting(t, startMochi(t, "tcp", nil, nil)) })
	t.Run("mosquitto", func(t *testing.T) { copyWaiting(t, newMosquitto(t).url("tcp")) })
}

func copyWaiting(t *testing.T, brokerURL string) {
	var mu sync.Mutex
	var conns []net.Conn
	pipe := func(dst, src net.Conn) {
		mu.Lock()
		conns = append(conns, dst, src)
		mu.Unlock()
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	cut := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		conns = nil
	}
	url := "tcp://" + nettest.PipeProxy(t, strings.TrimPrefix(brokerURL, "tcp://"), pipe, pipe)
	sink := make(chanSink) // Deliver waits for the test to take the sample
	cfg := Config{Name: "b", URL: url, ClientID: "waiting", Topics: []string{"m1/run", "m1/good"}, KeepAlive: 2 * time.Second}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, brokerURL, nil)
	for _, msg := range [][2]string{{"m1/good", "5"}, {"m1/run", "0"}, {"m1/run", "1"}} {
		p.pub(t, msg[0], []byte(msg[1]))
		sink.next(t) // stored, never acknowledged
	}
	r.stop(t) // killed after the commit, before the PUBACKs

	cfg.EpochBase = 1 // the agent's last connection number, kept in its buffer
	r = start(t, cfg, sink)
	// Connection 2 counts once its subscribe is answered; the broker
	// resends before that (mosquitto right after CONNACK), and a cut
	// before it would leave the next connect counted as the first.
	waitFor(t, "the three resent in connection 2, its subscribe answered", func() bool {
		st := r.Stats()
		return st.Received >= 3 && st.Connects >= 1
	})
	cut() // the count is held in Deliver; the stop and run wait in the queue
	waitFor(t, "the next connect", func() bool { return r.Stats().Connects >= 2 && r.State() == connectors.StateConnected })
	got := map[string][]uint64{} // payload: the connections its copies came in
	for len(got["0"]) < 2 || len(got["1"]) < 2 {
		s := sink.next(t)
		t.Logf("%s %q: packet id %d, DUP %v, connection %d", s.Address, s.Payload, s.PacketID, s.Duplicate, s.Epoch)
		if s.Address == "m1/run" {
			got[string(s.Payload)] = append(got[string(s.Payload)], s.Epoch)
		}
		s.Done()
		if len(got["0"]) == 1 && got["0"][0] == 3 {
			t.Fatalf("the stop's copy of connection 2 was not handed over: its first copy came in connection 3, two after the stop")
		}
	}
	for _, v := range []string{"0", "1"} {
		if want := []uint64{2, 3}; !slices.Equal(got[v], want) {
			t.Errorf("%q: copies in connections %v, want %v", v, got[v], want)
		}
	}
}
