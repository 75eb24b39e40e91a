package opcua

import (
	"context"
	"fmt"
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
	t.Run("gopcua", func(t *testing.T) {
		srv, err := opcuatest.Start(context.Background(), freePort(t), map[string]any{"Run": true, "Count": int64(10)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		lostPublishAnswer(t, srv.Endpoint(), srv.NodeID("Run"), srv.NodeID("Count"), func(node string, v any) {
			srv.Set(strings.TrimPrefix(node, fmt.Sprintf("ns=%d;s=", srv.NS())), v)
		}, true, false, int64(11), int64(12))
	})
	// node-opcua keeps what it published until the client acknowledges
	// it (gopcua never asks for it again): the same.
	t.Run("node-opcua", func(t *testing.T) {
		srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,2")
		run, count := "nsu=urn:plantedge:test;s=L0.M0.T0", "nsu=urn:plantedge:test;s=L0.M0.T1"
		w := opcuatest.NewWriter(t, srv.Endpoint)
		set := func(node string, v any) {
			t.Helper()
			w.Set(t, "urn:plantedge:test", strings.TrimPrefix(node, "nsu=urn:plantedge:test;s="), v.(float64))
		}
		set(run, 1.0)
		lostPublishAnswer(t, srv.Endpoint, run, count, set, 1.0, 0.0, 11.0, 12.0)
	})
}

// lostPublishAnswer runs a source on the server at endpoint through a link
// whose answers are held 9 s while run is set from running to stopped and
// count from count1 to count2, and checks that both come in the session.
func lostPublishAnswer(t *testing.T, endpoint, run, count string, set func(node string, v any), running, stopped, count1, count2 any) {
	// The requests go through; the server's answers are held.
	var up nettest.BlackHole
	var down nettest.Stall
	px := nettest.PipeProxy(t, strings.TrimPrefix(endpoint, "opc.tcp://"), up.Pipe, down.Pipe)
	t.Cleanup(down.Release)
	col := newCollector()
	asked := make(chan string, 64)
	// Heartbeat 15 s: a keep-alive every 5 s (a third), so gopcua waits
	// 5 s for an answer (request_timeout 4 s is less; a connect has twice
	// that: node-opcua's first took over 2 s on a busy machine, and at
	// request_timeout 1 s none came within 15 s).
	src := runSourceWith(t, Config{Endpoint: "opc.tcp://" + px, Nodes: []string{run, count},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 15 * time.Second, RequestTimeout: 4 * time.Second,
	}, col, func(s *Source) {
		s.asking = func(what string) {
			select {
			case asked <- what:
			default:
			}
		}
	})
	_, i := col.waitFor(t, 0, time.Minute, "the run state's first value", func(s connectors.Sample) bool {
		return s.Address == run && s.Initial && s.Value == running
	})
	// A data change notified, so the subscription publishes.
	set(count, count1)
	_, i = col.waitFor(t, i+1, 15*time.Second, "the first count", func(s connectors.Sample) bool { return s.Address == count && s.Value == count1 })
	before := src.Stats()

	down.Hold()
	held := time.Now()
	set(run, stopped)
	set(count, count2)
	// Held 9 s from the hold on (the writes count: node-opcua's take a
	// while on a busy machine): 4 s longer than gopcua waits for the
	// answer carrying them (5 s), 6 s shorter than the heartbeat (15 s) —
	// a loop late to hear the last answer before the hold, or the first
	// after it, has seconds, not the 2 s it had (held 5 s, waited 3 s,
	// heartbeat 9 s).
	time.Sleep(time.Until(held.Add(9 * time.Second)))
	down.Release()

	stop, _ := col.waitFor(t, i+1, 15*time.Second, "the stop", func(s connectors.Sample) bool { return s.Address == run && s.Value == stopped })
	if !stop.Good || stop.Initial || stop.Watch == 0 {
		t.Errorf("the stop read again: %+v; want a good value of the session's watch, not a first read", stop)
	}
	col.waitFor(t, i+1, 15*time.Second, "the second count", func(s connectors.Sample) bool { return s.Address == count && s.Value == count2 })
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
