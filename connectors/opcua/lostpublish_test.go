package opcua

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
)

// gopcua (v0.8.0) waits for a Publish answer as long as the subscription's
// keep-alive period (request_timeout at least), then asks again; the answer
// that comes later (a link that stalled, a switch's spanning tree
// reconverging) finds no one waiting and is dropped, and with it the data
// changes it carried: the server sent them and moves on (gopcua's server
// keeps no copy to publish again, and gopcua never asks for one). A stop in
// it was never seen: the machine ran on in the agent until its next change
// — a run after an hour's stop then no stop at all, a stop after a run
// lost closed a stop that swallowed the run. The subscription itself goes
// on, so the heartbeat (a silence of heartbeat_timeout) does not end the
// session, and nothing read the node again. Now a silence of the
// subscription at least as long as gopcua waits for an answer is followed
// by a read of every monitored node: what the lost answer carried comes
// from it, in the same session.
func TestLostPublishAnswerIsReadAgain(t *testing.T) {
	srv, err := opcuatest.Start(context.Background(), freePort(t), map[string]any{"Run": true, "Count": int64(10)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	run, count := srv.NodeID("Run"), srv.NodeID("Count")
	// The requests go through; the server's answers are held.
	var up nettest.BlackHole
	var down nettest.Stall
	px := nettest.PipeProxy(t, strings.TrimPrefix(srv.Endpoint(), "opc.tcp://"), up.Pipe, down.Pipe)
	t.Cleanup(down.Release)
	col := newCollector()
	asked := make(chan string, 64)
	// Heartbeat 9 s: a keep-alive every 3 s (a third), so gopcua waits 3 s
	// for an answer (request_timeout 1 s is less).
	src := runSourceWith(t, Config{Endpoint: "opc.tcp://" + px, Nodes: []string{run, count},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 9 * time.Second, RequestTimeout: time.Second,
	}, col, func(s *Source) {
		s.asking = func(what string) {
			select {
			case asked <- what:
			default:
			}
		}
	})
	_, i := col.waitFor(t, 0, 15*time.Second, "Run's first value", func(s connectors.Sample) bool { return s.Address == run && s.Initial })
	// A data change notified, so the subscription publishes.
	srv.Set("Count", int64(11))
	_, i = col.waitFor(t, i+1, 15*time.Second, "Count 11", func(s connectors.Sample) bool { return s.Address == count && s.Value == int64(11) })
	before := src.Stats()

	down.Hold()
	srv.Set("Run", false)
	srv.Set("Count", int64(12))
	// Held 5 s: longer than gopcua waits for the answer carrying them (3 s),
	// shorter than the heartbeat (9 s).
	time.Sleep(5 * time.Second)
	down.Release()

	stop, _ := col.waitFor(t, i+1, 15*time.Second, "Run false", func(s connectors.Sample) bool { return s.Address == run && s.Value == false })
	if !stop.Good || stop.Initial || stop.Watch == 0 {
		t.Errorf("the stop read again: %+v; want a good value of the session's watch, not a first read", stop)
	}
	col.waitFor(t, i+1, 15*time.Second, "Count 12", func(s connectors.Sample) bool { return s.Address == count && s.Value == int64(12) })
	st := src.Stats()
	if st.SessionsCreated != before.SessionsCreated || st.HeartbeatRebuilds != before.HeartbeatRebuilds {
		t.Errorf("stats %+v (before the stall %+v): want the same session, no heartbeat rebuild", st, before)
	}
	if st.CatchUpReads <= before.CatchUpReads {
		t.Errorf("catch-up reads %d, before the stall %d: want one more", st.CatchUpReads, before.CatchUpReads)
	}
	var whats []string
	for len(asked) > 0 {
		whats = append(whats, <-asked)
	}
	if !strings.Contains(strings.Join(whats, ","), "read (catch up)") {
		t.Errorf("asked %q: want a catch-up read", whats)
	}
}
