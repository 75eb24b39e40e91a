package opcua

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
)

// A stop and the run after it, made while the link to the server was cut
// (shorter than the session's lifetime), were lost: the new session's
// first read brought only the last value, the run the machine was in
// before — the agent saw neither the stop nor its run. node-opcua keeps
// the subscription of the session the lost link left, with what its
// monitored items queued: the next connection, activating that session to
// close it, first takes those changes from it (Publish, and Republish for
// an answer lost with the link), and the source delivers them, in order
// and with their source times, before the new session's first values.
func TestChangesHiddenByALinkLossAreRecovered(t *testing.T) {
	t.Run("stop and run", func(t *testing.T) { recoverAfterLoss(t, linkCrash, []float64{1, 0, 1}, false, false) })
	// Twelve changes, a queue of ten: the first ones discarded by the
	// server, the next flagged (Overflow): counted, and a new watch
	// from it, as when live.
	t.Run("overflow", func(t *testing.T) {
		recoverAfterLoss(t, linkCrash, []float64{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}, true, false)
	})
	// On a Basic256Sha256 SignAndEncrypt channel: the left session is
	// activated again on a secure channel of its own (signed with the
	// nonce of its last activation), and the drain's requests go on it.
	t.Run("secured", func(t *testing.T) { recoverAfterLoss(t, linkCrash, []float64{1, 0, 1}, false, true) })
}

// The same through a link that goes silent (a cable pulled, a switch
// dead: no RST, no FIN), found by the heartbeat, and silent longer than
// heartbeat_timeout. The subscription was asked a lifetime of
// heartbeat_timeout (three keep-alive periods): the server deleted it,
// with the changes its monitored items had queued, before the link came
// back, while the session lived on (its lifetime, 2 minutes): nothing was
// recovered. It is asked the session's lifetime now.
func TestChangesHiddenByASilentLinkLossAreRecovered(t *testing.T) {
	recoverAfterLoss(t, linkSilent, []float64{1, 0, 1}, false, false)
}

// The lifetime count asked of a subscription: the session's lifetime in
// publishing intervals, rounded up, three keep-alive periods at least,
// and a count a uint32 holds.
func TestSubscriptionLivesAsLongAsItsSession(t *testing.T) {
	for _, tc := range []struct {
		session, interval time.Duration
		keepAlive         uint32
		want              uint32
	}{
		{2 * time.Minute, 100 * time.Millisecond, 33, 1200}, // the agent's defaults: 10 s heartbeat
		{2 * time.Minute, time.Second, 3, 120},
		{1050 * time.Millisecond, 100 * time.Millisecond, 1, 11},
		{time.Second, 100 * time.Millisecond, 100, 300},        // a keep-alive longer than the session
		{50 * time.Minute, time.Nanosecond, 1, math.MaxUint32}, // more than a uint32
	} {
		if got := subLifetime(tc.session, tc.interval, tc.keepAlive); got != tc.want {
			t.Errorf("subLifetime(%v, %v, %d) = %d, want %d", tc.session, tc.interval, tc.keepAlive, got, tc.want)
		}
	}
}

// linkLoss is a way the link to the server is lost: link starts what
// carries the source's connections to target (host:port) and returns its
// host:port, lose, which loses the link, and back, which brings it back.
// heartbeat is the source's heartbeat_timeout (0: the default).
type linkLoss struct {
	heartbeat time.Duration
	link      func(t *testing.T, target string) (addr string, lose, back func())
}

// linkCrash resets the link's connections and refuses new ones until it
// is back: the loss is seen at once.
var linkCrash = linkLoss{link: func(t *testing.T, target string) (string, func(), func()) {
	px := nettest.NewCrashProxy(t, target)
	return px.Addr(), px.Crash, px.Restart
}}

// linkSilent makes the link silent, for silentFor from lose: what either
// side sends goes nowhere, every connection stays open (the source finds
// it by its heartbeat, 2 s). Back, the connections open then are closed
// (what they held lost) and new ones go through.
var linkSilent = linkLoss{heartbeat: 2 * time.Second, link: func(t *testing.T, target string) (string, func(), func()) {
	return nettest.SilentLink(t, target, silentFor)
}}

// silentFor is how long linkSilent keeps the link silent: past the
// lifetime the subscription was asked before (heartbeat_timeout, 2 s,
// which node-opcua raises to its floor, 5 s) however the server counts
// it, well within the session's (2 minutes).
const silentFor = 12 * time.Second

// recoverAfterLoss runs a source on node-opcua through a link lost (loss)
// while the node is set to values, and checks what comes before the new
// session's first value: the values (with overflow, the last ten, the
// queue's size, and perhaps the first, sent as the link went). secure:
// the source connects with Basic256Sha256 SignAndEncrypt (the writer
// with None).
func recoverAfterLoss(t *testing.T, loss linkLoss, values []float64, overflow, secure bool) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,1")
	const run = "nsu=urn:plantedge:test;s=L0.M0.T0"
	w := opcuatest.NewWriter(t, srv.Endpoint)
	// set writes v and returns its source time (read back).
	set := func(v float64) time.Time {
		t.Helper()
		return w.Set(t, "urn:plantedge:test", "L0.M0.T0", v)
	}
	set(0)

	addr, lose, back := loss.link(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	col := newCollector()
	// The subscription lives as long as the session (2 minutes): the
	// loss is well within it.
	cfg := Config{Endpoint: "opc.tcp://" + addr, Nodes: []string{run},
		PublishingInterval: 100 * time.Millisecond, QueueSize: 10, RequestTimeout: 5 * time.Second,
		HeartbeatTimeout: loss.heartbeat,
		BackoffMin:       20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	if secure {
		cfg.SecurityPolicy, cfg.SecurityMode, cfg.DataDir = "Basic256Sha256", "SignAndEncrypt", t.TempDir()
		cfg.Username, cfg.Password = "operator", "s3cret"
	}
	src := runSource(t, cfg, col)
	col.waitFor(t, 0, time.Minute, "the first value", func(s connectors.Sample) bool { return s.Address == run && s.Value == 0.0 })
	// A change notified live: the subscription publishes.
	set(1)
	col.waitFor(t, 0, 15*time.Second, "a run notified", func(s connectors.Sample) bool { return s.Address == run && !s.Initial && s.Value == 1.0 })
	set(0)
	_, last := col.waitFor(t, 0, 15*time.Second, "a stop notified", func(s connectors.Sample) bool {
		return s.Address == run && !s.Initial && s.Value == 0.0
	})

	lose()
	waitUntil(t, 15*time.Second, func() bool { return src.State() != connectors.StateConnected })
	from := max(col.len(), last+1)
	// While lost: the machine runs, stops, runs (each change sampled:
	// more apart than the sampling interval).
	before := src.Stats()
	var watch uint64 // the watch of the last value delivered before the loss
	for _, s := range col.all() {
		if s.Address == run {
			watch = s.Watch
		}
	}
	var written []time.Time
	for _, v := range values {
		written = append(written, set(v))
		time.Sleep(300 * time.Millisecond)
	}
	back()

	_, first := col.waitFor(t, from, time.Minute, "the new session's first value", func(s connectors.Sample) bool {
		return s.Address == run && s.Initial
	})
	var got []connectors.Sample
	for _, s := range col.all()[from:first] {
		if s.Address == run {
			got = append(got, s)
		}
	}
	// Each value recovered is one written, in the order written, with
	// its source time. Without overflow, all of them, in the watch of the
	// session the loss left. With it, the last ten (the queue) are, the
	// first of them flagged: counted, and a watch of its own from it on
	// (one written before them may come too: sent in the answer under
	// way at the loss, had again with Republish).
	ok, k := true, -1
	var at []int // the index written of each value recovered
	for _, s := range got {
		j := k + 1
		for j < len(written) && !written[j].Equal(s.SourceTime) {
			j++
		}
		if j == len(written) || s.Value != values[j] || !s.Good || s.Initial {
			ok = false
			break
		}
		k = j
		at = append(at, j)
	}
	firstKept := 0 // the first of the values the server kept for the queue
	if overflow {
		firstKept = len(written) - 10
	}
	if ok {
		i := slices.Index(at, firstKept)
		ok = i >= 0 && len(at)-i == len(written)-firstKept && (overflow || i == 0)
		if ok {
			if w := got[0].Watch; i == 0 && overflow == (w == watch) {
				t.Errorf("the first value recovered in watch %x, the last one before the loss in %x (overflow %v)", w, watch, overflow)
			}
			if i > 0 && got[i].Watch == got[i-1].Watch {
				t.Errorf("the first value after those the server discarded in the watch before them (%x)", got[i].Watch)
			}
			for _, s := range got[i+1:] {
				if s.Watch != got[i].Watch {
					t.Errorf("recovered values in watches %x and %x", got[i].Watch, s.Watch)
				}
			}
		}
		if d := src.Stats().Overflows - before.Overflows; overflow != (d == 1) {
			t.Errorf("%d overflows counted (overflow %v)", d, overflow)
		}
		if d := src.Stats().RecoveredChanges - before.RecoveredChanges; d != uint64(len(got)) {
			t.Errorf("%d changes counted as recovered, %d delivered before the new session's first value", d, len(got))
		}
	}
	if !ok {
		t.Errorf("before the new session's first value: %d samples", len(got))
		for _, s := range got {
			t.Errorf("  %v @ %s (good %v, initial %v)", s.Value, s.SourceTime.Format("15:04:05.000"), s.Good, s.Initial)
		}
		for i, v := range values {
			t.Errorf("written %v @ %s", v, written[i].Format("15:04:05.000"))
		}
	}
}

// gopcua's server answers a subscription's Publish only on the channel
// that made it (gone with the link), and has neither ModifySubscription
// nor Republish: the left session's subscription is asked one thing, the
// ModifySubscription it refuses at once, and nothing else (no Publish,
// which it would leave unanswered until the request timeout). The session
// is closed as before, and the new session's first read brings the value.
func TestNoChangesRecoveredFromGopcuaServer(t *testing.T) {
	srv, err := opcuatest.Start(context.Background(), freePort(t), map[string]any{"Run": 0.0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	run := srv.NodeID("Run")
	px := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint(), "opc.tcp://"))
	col := newCollector()
	var mu sync.Mutex
	var asked []string
	src := runSourceWith(t, Config{Endpoint: "opc.tcp://" + px.Addr(), Nodes: []string{run},
		PublishingInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, col, func(s *Source) {
		s.drainAsking = func(what string) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, what)
		}
	})
	col.waitFor(t, 0, 30*time.Second, "the first value", func(s connectors.Sample) bool { return s.Address == run && s.Initial })
	srv.Set("Run", 1.0)
	col.waitFor(t, 0, 15*time.Second, "a run notified", func(s connectors.Sample) bool { return s.Address == run && !s.Initial && s.Value == 1.0 })
	px.Crash()
	waitUntil(t, 15*time.Second, func() bool { return src.State() != connectors.StateConnected })
	from := col.len()
	srv.Set("Run", 0.0)
	srv.Set("Run", 1.0)
	srv.Set("Run", 0.0)
	px.Restart()
	_, first := col.waitFor(t, from, 30*time.Second, "the new session's first value", func(s connectors.Sample) bool {
		return s.Address == run && s.Initial
	})
	for _, s := range col.all()[from:first] {
		if s.Address == run {
			t.Errorf("before the new session's first value: %v @ %s; want none", s.Value, s.SourceTime.Format("15:04:05.000"))
		}
	}
	if st := src.Stats(); st.LeftSessionsClosed != 1 {
		t.Errorf("%d left sessions closed, want 1", st.LeftSessionsClosed)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []string{"modify subscription"}) {
		t.Errorf("the left subscription asked %q; want only the modify subscription it refuses", asked)
	}
}

// A server that leaves the drain unanswered (node-opcua holding the
// ModifySubscription) costs the reconnect half of request_timeout, not
// the left session's close: it is closed with the other half, the server
// holds the source's one session after, and the new session's first read
// brings the value.
func TestUnansweredDrainStillClosesTheLeftSession(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,1", "HOLD=ModifySubscriptionRequest:1")
	const run = "nsu=urn:plantedge:test;s=L0.M0.T0"
	px := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	col := newCollector()
	src := runSource(t, Config{Endpoint: "opc.tcp://" + px.Addr(), Nodes: []string{run},
		PublishingInterval: 100 * time.Millisecond, RequestTimeout: 4 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, col)
	from := cutUntilTheDrainIsHeld(t, srv, opcuatest.NewWriter(t, srv.Endpoint), px, src, col)
	col.waitFor(t, from, time.Minute, "the new session's first value", func(s connectors.Sample) bool { return s.Address == run && s.Initial })
	if st := src.Stats(); st.LeftSessionsClosed != 1 {
		t.Errorf("%d left sessions closed, want 1", st.LeftSessionsClosed)
	}
	// The source's session and the one writing.
	waitUntil(t, 30*time.Second, func() bool { return srv.sessions.Load() == 2 })
}

// A stop while the drain waits for an answer the server holds (node-opcua
// holding its ModifySubscription) ends the drain at once: Run returns long
// before the request timeout (ten minutes here: the drain had five), the
// left session is closed all the same — on its own channel, by the
// connect the stop ended — nothing is delivered after Run returned, and no
// goroutine of the source outlives it.
func TestStopWhileTheDrainWaits(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,1", "HOLD=ModifySubscriptionRequest:1")
	const run = "nsu=urn:plantedge:test;s=L0.M0.T0"
	w := opcuatest.NewWriter(t, srv.Endpoint)
	px := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	ignore := goleak.IgnoreCurrent() // the server's, the writer's, the proxy's
	col := newCollector()
	var returned, late atomic.Bool
	sink := connectors.SinkFunc(func(ctx context.Context, s connectors.Sample) error {
		if returned.Load() {
			late.Store(true)
		}
		return col.Deliver(ctx, s)
	})
	src, err := New(Config{Name: "line1", Endpoint: "opc.tcp://" + px.Addr(), Nodes: []string{run},
		PublishingInterval: 100 * time.Millisecond, RequestTimeout: 10 * time.Minute,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: testLogger(t)}, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	cutUntilTheDrainIsHeld(t, srv, w, px, src, col)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run had not returned a minute after the stop: it waited for the drain's request timeout")
	}
	returned.Store(true)
	if st := src.State(); st != connectors.StateDown {
		t.Errorf("state after Run = %s, want down", st)
	}
	// The proxy stays up (crashing it would end a drain still waiting).
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/plantedge/plantedge/internal/nettest.(*CrashProxy).Restart.func1"),
		goleak.IgnoreAnyFunction("github.com/plantedge/plantedge/internal/nettest.(*CrashProxy).Restart.func1.1"))
	// The writer's session alone: the left one was closed.
	for end := time.Now().Add(30 * time.Second); srv.sessions.Load() != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the server holds %d sessions 30 s after the stop; want 1, the writer's (the left session not closed)", srv.sessions.Load())
		}
	}
	if late.Load() {
		t.Error("a sample delivered after Run returned")
	}
	t.Logf("stats after the stop: %+v", src.Stats())
}

// cutUntilTheDrainIsHeld waits for src's first value of node-opcua's
// L0.M0.T0 (srv holding the drain's ModifySubscription:
// HOLD=ModifySubscriptionRequest:1), makes a change the subscription
// notifies (w), cuts the link (px) and brings it back once src has seen
// the cut, and returns when the next connection's drain has sent its
// ModifySubscription, which srv holds: col's length at the cut.
func cutUntilTheDrainIsHeld(t *testing.T, srv *nodeServer, w *opcuatest.Writer, px *nettest.CrashProxy, src *Source, col *collector) (from int) {
	t.Helper()
	const run = "nsu=urn:plantedge:test;s=L0.M0.T0"
	col.waitFor(t, 0, time.Minute, "the first value", func(s connectors.Sample) bool { return s.Address == run && s.Initial })
	// A change notified: the subscription is made.
	w.Set(t, "urn:plantedge:test", "L0.M0.T0", 7)
	col.waitFor(t, 0, 15*time.Second, "the change notified", func(s connectors.Sample) bool { return s.Address == run && !s.Initial && s.Value == 7.0 })
	px.Crash()
	waitUntil(t, 15*time.Second, func() bool { return src.State() != connectors.StateConnected })
	from = col.len()
	px.Restart()
	select {
	case svc := <-srv.held:
		if svc != "ModifySubscriptionRequest" {
			t.Fatalf("held %s", svc)
		}
	case <-time.After(time.Minute):
		t.Fatal("the drain's ModifySubscription never came")
	}
	return from
}
