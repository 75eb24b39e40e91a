package opcua

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nettest"
)

// The subscription's loop asks the server for more than publishing: the
// values of the nodes it polls (those the server has no room to monitor),
// monitored items for nodes refused before, the deletion of items whose
// node went away, and, without a server clock, a read of the nodes at each
// heartbeat_timeout. A link that stalls (no FIN, no RST) while one of
// those waits is found at heartbeat_timeout, not when the request gives up
// at request_timeout (a minute here; it was the detection time: the
// heartbeat's check waited behind the request, 12.1 s with the default
// 10 s and a 2 s heartbeat). What the stalled link lets through once it
// comes back, after the session was given up — the request's late answer —
// is not delivered: each node's samples stay in order, one session's after
// the other's.
func TestSilentLinkDetectedWhileARequestWaits(t *testing.T) {
	const counter = "nsu=urn:plantedge:test;s=Counter"
	for _, tc := range []struct {
		what  string // the request during which the link stalls (Source.asking)
		env   []string
		nodes []string
		after string // a node whose values show the next session
		// ordered is a node whose values must never go down nor repeat
		// a read (its source time): the polled counter.
		ordered string
	}{
		{
			// The server monitors its clock and two nodes; Counter (one
			// more every 200 ms) and T2 are polled.
			what:    "read polled",
			env:     []string{"PLANT=1,1,3", "MAX_MONITORED_ITEMS_PER_SUBSCRIPTION=3"},
			nodes:   []string{plantNodes(1)[0], "nsu=urn:plantedge:test;s=L0.M0.T1", counter, "nsu=urn:plantedge:test;s=L0.M0.T2"},
			after:   counter,
			ordered: counter,
		},
		{
			// A node the server does not have is offered to it again at
			// each retry.
			what:  "monitor",
			env:   []string{"PLANT=1,1,1"},
			nodes: []string{plantNodes(1)[0], counter, "nsu=urn:plantedge:test;s=Nope"},
			after: counter,
		},
		{
			// No server clock: a quiet line's nodes are read at each
			// heartbeat_timeout.
			what:  "read (no clock)",
			env:   []string{"PLANT=1,1,1", "NO_CLOCK=1"},
			nodes: plantNodes(1),
			after: plantNodes(1)[0],
		},
	} {
		t.Run(tc.what, func(t *testing.T) {
			srv := startNodeServer(t, append([]string{"NO_SECURITY=1"}, tc.env...)...)
			var stall nettest.Stall
			px := nettest.PipeProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"), stall.Pipe, stall.Pipe)
			col := newCollector()
			src, at, closing := silentLinkSource(t, "opc.tcp://"+px, tc.nodes, col, tc.what, &stall, true)
			stalled, detected, before := waitDetected(t, src, at)
			sessionAfter(t, src, col, tc.after, detected, before)
			checkOrder(t, col.all(), tc.ordered, stalled, closing())
		})
	}
}

// The same while the deletion of the monitored item of a node gone away
// waits (gopcua's in-process server: its node can go). The deletion
// delivers nothing; only its detection is checked.
func TestSilentLinkDetectedWhileAnUnmonitorWaits(t *testing.T) {
	ts := startInProcess(t, 0)
	var gone atomic.Bool
	nid := ua.NewStringNodeID(ts.ns.ID(), "Dyn")
	ts.ns.AddNode(varNode(nid, "Dyn", func() *ua.DataValue {
		if gone.Load() {
			return dv(nil, ua.StatusBadNodeIDUnknown)
		}
		return dv(int32(10), ua.StatusOK)
	}))
	var stall nettest.Stall
	px := nettest.PipeProxy(t, strings.TrimPrefix(ts.url, "opc.tcp://"), stall.Pipe, stall.Pipe)
	col := newCollector()
	src, at, _ := silentLinkSource(t, "opc.tcp://"+px, []string{"ns=1;s=Counter", "ns=1;s=Dyn"}, col, "unmonitor", &stall, false)
	col.waitFor(t, 0, 10*time.Second, "the node monitored", func(s connectors.Sample) bool {
		return s.Address == "ns=1;s=Dyn" && s.Good && !s.Initial
	})
	gone.Store(true)
	ts.srv.ChangeNotification(nid)
	// The link dies as the session closes, and comes back (what it kept
	// lost: silentLinkSource): gopcua's server (v0.8.0) dereferences nil in
	// DeleteMonitoredItems when it gets one late, for an item or session it
	// no longer has (the request, let through late, crashed the test).
	stalled, detected, before := waitDetected(t, src, at)
	gone.Store(false)
	sessionAfter(t, src, col, "ns=1;s=Dyn", detected, before)
	checkOrder(t, col.all(), "", stalled, detected)
}

// silentLinkSource runs a source for the silent-link tests (heartbeat 2 s,
// request timeout a minute, a quick reconnect) that stalls the link as it
// first asks for what (Source.asking); at says when that was. With
// lateAnswer, the link is released as the session closes (closing says
// when), so the request's answer comes late to the client still open;
// without, it is dropped then (Stall.Drop), what it kept lost — there, on
// the source's goroutine, before it reconnects: a Drop by the test once it
// saw the session end could come after the next session connected (32 ms
// after the end in a loaded run) and end that one too: a second heartbeat
// rebuild.
func silentLinkSource(t *testing.T, endpoint string, nodes []string, col *collector, what string, stall *nettest.Stall, lateAnswer bool) (src *Source, at <-chan time.Time, closing func() time.Time) {
	t.Helper()
	var once sync.Once
	stalled := make(chan time.Time, 1)
	t.Cleanup(stall.Release)
	src = runSourceWith(t, Config{Endpoint: endpoint, Nodes: nodes,
		PublishingInterval: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		HeartbeatTimeout: 2 * time.Second, RequestTimeout: time.Minute,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, col, func(s *Source) {
		var closed sync.Once
		var closedAt atomic.Value // time.Time
		closing = func() time.Time { t, _ := closedAt.Load().(time.Time); return t }
		s.asking = func(w string) {
			switch w {
			case what:
				once.Do(func() {
					stall.Hold()
					stalled <- time.Now()
				})
			case "close":
				if !lateAnswer && stall.Held() {
					stall.Drop()
				}
				if lateAnswer && stall.Held() {
					// The link comes back as the session that gave it
					// up closes: the answer to its request comes late,
					// to the client still open.
					closed.Do(func() {
						closedAt.Store(time.Now())
						stall.Release()
						time.Sleep(500 * time.Millisecond)
					})
				}
			}
		}
	})
	return src, stalled, closing
}

// waitDetected waits for the stall, then for the heartbeat to end the
// session (Stats.HeartbeatRebuilds); it returns when the link stalled and
// when it saw the session ended.
func waitDetected(t *testing.T, src *Source, stalled <-chan time.Time) (at, detected time.Time, before Stats) {
	t.Helper()
	select {
	case at = <-stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the request was not asked")
	}
	// Counted from the stall: on a loaded machine a session's heartbeat
	// can lapse before it (a CI run: the first session's, 2 s after its
	// connect, before the stall; the wait then ended at once).
	before = src.Stats()
	// 20 s: ten heartbeat timeouts, a third of the request timeout.
	for end := at.Add(20 * time.Second); src.Stats().HeartbeatRebuilds == before.HeartbeatRebuilds; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("a stalled link not detected %v after it stalled, heartbeat_timeout 2s: the heartbeat waits behind the request (request_timeout 1m); stats %+v",
				time.Since(at).Round(time.Second), src.Stats())
		}
	}
	t.Logf("the stalled link detected %v after it stalled", time.Since(at).Round(10*time.Millisecond))
	return at, time.Now(), before
}

// sessionAfter waits for the next session and values of node in it;
// before is the source's stats at the stall.
func sessionAfter(t *testing.T, src *Source, col *collector, node string, detected time.Time, before Stats) {
	t.Helper()
	waitUntil(t, 20*time.Second, func() bool { return src.Stats().SessionsCreated > before.SessionsCreated })
	_, i := col.waitFor(t, 0, 15*time.Second, "the new session's first read", func(s connectors.Sample) bool {
		return s.Address == node && s.Initial && s.ReceiveTime.After(detected)
	})
	col.waitFor(t, i+1, 15*time.Second, "a value after it", func(s connectors.Sample) bool { return s.Address == node && !s.Initial })
	if st := src.Stats(); st.HeartbeatRebuilds != before.HeartbeatRebuilds+1 || !strings.Contains(st.LastError, ErrHeartbeat.Error()) {
		t.Errorf("stats %+v (at the stall %+v): want one heartbeat rebuild since, its error last", st, before)
	}
}

// checkOrder checks each node's samples: one session's (its Watch) after
// the other's, never back; none of the session that ended after the link
// stalled received after it ended (a late answer: as it closed, the
// link came back); the values of ordered
// (if not "") never down, nor its source time back.
func checkOrder(t *testing.T, all []connectors.Sample, ordered string, stalled, ended time.Time) {
	t.Helper()
	if ended.IsZero() {
		t.Fatal("the session that stalled did not close while its link was held")
	}
	first := map[uint64]bool{} // the watches of the session that stalled
	for _, s := range all {
		if s.Watch != 0 && s.ReceiveTime.Before(stalled) {
			first[s.Watch] = true
		}
	}
	done := map[string]map[uint64]bool{} // node -> watches ended
	last := map[string]connectors.Sample{}
	for i, s := range all {
		if first[s.Watch] && s.ReceiveTime.After(ended) {
			t.Errorf("sample %d of %s: received after its session ended: %+v", i, s.Address, s)
		}
		p, ok := last[s.Address]
		last[s.Address] = s
		if done[s.Address] == nil {
			done[s.Address] = map[uint64]bool{}
		}
		if s.Watch != 0 && done[s.Address][s.Watch] {
			t.Errorf("sample %d of %s: a session's value after the next session's: %+v", i, s.Address, s)
		}
		if !ok {
			continue
		}
		if p.Watch != s.Watch {
			done[s.Address][p.Watch] = true
		}
		if s.Address != ordered || !p.Good || !s.Good {
			continue
		}
		if pv, v := p.Value.(int64), s.Value.(int64); v < pv {
			t.Errorf("sample %d of %s: %d after %d", i, s.Address, v, pv)
		}
		if s.SourceTime.Before(p.SourceTime) {
			t.Errorf("sample %d of %s: source time %v after %v", i, s.Address, s.SourceTime, p.SourceTime)
		}
	}
}
