package opcua

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
)

// startSlots starts opcuatest's server with room for max sessions (0: no
// limit).
func startSlots(t *testing.T, max int, opts ...opcuatest.Option) *opcuatest.Server {
	t.Helper()
	srv, err := opcuatest.Start(context.Background(), 0, map[string]any{"Count": int32(1)}, append(opts, opcuatest.WithMaxSessions(max))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// otherClient is another client of the server (the plant's HMI) holding a
// session.
func otherClient(t *testing.T, endpoint string) *opcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := opcua.NewClient(endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeClient(c) })
	return c
}

// A server whose session slots the HMI holds (one here) refuses the
// source's session with BadTooManySessions: its last error (status) says
// what that means and what to check, with the lifetime the source asked
// for; it is logged once however often it is refused, and tried again
// only after slotRetryMin (the backoff alone made three attempts in 2 s):
// once the HMI leaves, the source takes the slot at its next attempt.
func TestNoSessionSlotSaysWhyAndWaits(t *testing.T) {
	srv := startSlots(t, 1)
	hmi := otherClient(t, srv.Endpoint())
	var logs lockedLog
	col := newCollector()
	src := runSource(t, Config{Endpoint: srv.Endpoint(), Nodes: []string{srv.NodeID("Count")},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, slotRetry: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))}, col)
	waitUntil(t, 30*time.Second, func() bool { return srv.Sessions().Refused() >= 4 })
	st := src.Stats()
	for _, want := range []string{"StatusBadTooManySessions", "every session slot of the server is taken", "HMI, SCADA",
		"which the server drops after their lifetime: plantedge asks for 2 minutes, which the server may revise"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last error %q does not say %q", st.LastError, want)
		}
	}
	// The lifetime asked is not said as the lifetime: the source knows
	// none the server gave (it never had a session of this one).
	if strings.Contains(st.LastError, "2 minutes for plantedge's") {
		t.Errorf("last error %q says the lifetime asked as the server's", st.LastError)
	}
	// The wait set after each refusal: slotRetry, not the backoff's 20 ms
	// at most (Stats.NextAttempt is set from it; no clock is read here).
	waitUntil(t, 30*time.Second, func() bool { return !src.Stats().NextAttempt.IsZero() })
	if st := src.Stats(); st.NextAttempt.Sub(st.LastErrorTime) < 300*time.Millisecond {
		t.Errorf("next attempt %v after the refusal, want slotRetry (300ms) at least", st.NextAttempt.Sub(st.LastErrorTime))
	}
	if n := strings.Count(logs.String(), "TooManySessions"); n != 1 {
		t.Errorf("the refusal logged %d times, want once:\n%s", n, logs.String())
	}
	closeClient(hmi)
	col.waitFor(t, 0, 30*time.Second, "a sample once the HMI left", func(s connectors.Sample) bool { return s.Initial })
	if n := srv.Sessions().Open(); n != 1 {
		t.Errorf("%d sessions open, want the source's one", n)
	}
}

// The gopcua client's error for a refused CreateSession is the status
// code, wrapped: NoSessionSlot finds it, and the hint keeps it. The
// lifetime it says is the one the server gave the source's earlier
// sessions when the source knows it; else the one asked for, said as
// asked (it said "4 minutes for plantedge's" whatever the server gave).
func TestNoSessionSlotHintKeepsTheStatus(t *testing.T) {
	for _, tc := range []struct {
		name           string
		asked, revised time.Duration
		want, not      string
	}{
		{"revised not known", 4 * time.Minute, 0, "after their lifetime: plantedge asks for 4 minutes, which the server may revise;", "for plantedge's"},
		{"revised known", 4 * time.Minute, 10 * time.Second, "after their lifetime: 10s for plantedge's, as this server revised it;", "4 minutes"},
		{"revised up", 2 * time.Minute, 20 * time.Minute, "after their lifetime: 20 minutes for plantedge's, as this server revised it;", "2 minutes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := slotHint(ua.StatusBadTooManySessions, tc.asked, tc.revised)
			if !NoSessionSlot(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) {
				t.Errorf("%v\nwant %q, not %q", err, tc.want, tc.not)
			}
		})
	}
	if NoSessionSlot(ua.StatusBadUserAccessDenied) {
		t.Error("a refused login is not a full server")
	}
}

// A server that revises the session lifetime (node-opcua's with
// SESSION_TIMEOUT_MS: the 2 minutes asked revised to 10 s) drops a
// session a client left after the revised lifetime. The source's
// session there is cut (the link), the server drops it after 10 s, the
// HMI takes the one slot, and the source's next session is refused: its
// last error says the 10 s the server gave its earlier session (it said
// "2 minutes for plantedge's", the lifetime asked).
func TestNoSessionSlotSaysTheLifetimeTheServerRevised(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "MAX_SESSIONS=1", "SESSION_TIMEOUT_MS=10000")
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	col := newCollector()
	src := runSource(t, Config{Endpoint: "opc.tcp://" + crash.Addr(), Nodes: []string{secureCounter},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, slotRetry: 200 * time.Millisecond}, col)
	col.waitFor(t, 0, 30*time.Second, "a first sample", func(s connectors.Sample) bool { return s.Initial })
	crash.Crash()
	waitUntil(t, 10*time.Second, func() bool { return src.State() != connectors.StateConnected })
	// The HMI connects once the server has dropped the session the cut
	// left (10 s after its last request): until then the slot is taken.
	var hmi *opcua.Client
	waitUntil(t, 60*time.Second, func() bool {
		c, err := opcua.NewClient(srv.Endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			closeClient(c)
			return false
		}
		hmi = c
		return true
	})
	t.Cleanup(func() { closeClient(hmi) })
	crash.Restart()
	waitUntil(t, 60*time.Second, func() bool { return strings.Contains(src.Stats().LastError, "TooManySessions") })
	le := src.Stats().LastError
	if !strings.Contains(le, "which the server drops after their lifetime: 10s for plantedge's, as this server revised it;") ||
		strings.Contains(le, "2 minutes") {
		t.Errorf("last error %q does not say the 10 s the server gave the source's session", le)
	}
}

// The lifetime a session the previous run kept was given (cfg.Sessions:
// what a run against a server revising it to 10 s keeps) is said, before
// this run has had a session: the server, gopcua's, knows the kept
// session no more, and the HMI holds its one slot.
func TestNoSessionSlotSaysTheLifetimeOfTheKeptSession(t *testing.T) {
	srv := startSlots(t, 1)
	otherClient(t, srv.Endpoint()) // the HMI
	keep := fileKeeper(filepath.Join(t.TempDir(), "session"))
	cfg := Config{Name: "line1", Endpoint: srv.Endpoint(), Nodes: []string{srv.NodeID("Count")}, Sessions: keep,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, slotRetry: 300 * time.Millisecond}
	probe, err := New(cfg, newCollector())
	if err != nil {
		t.Fatal(err)
	}
	k := probe.keptFor()
	if k.Token, err = ua.NewStringNodeID(1, "gone").Encode(); err != nil {
		t.Fatal(err)
	}
	k.LifetimeMS = 10000
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := keep.KeepSession(b); err != nil {
		t.Fatal(err)
	}
	src := runSource(t, cfg, newCollector())
	waitUntil(t, 30*time.Second, func() bool { return strings.Contains(src.Stats().LastError, "TooManySessions") })
	if le := src.Stats().LastError; !strings.Contains(le, "which the server drops after their lifetime: 10s for plantedge's, as this server revised it;") {
		t.Errorf("last error %q does not say the 10 s kept with the previous run's session", le)
	}
}

// A connection cut (the link, not the server) leaves the source's session
// on the server: its CloseSession cannot be sent. A server drops it only
// after its lifetime (gopcua's never does), and a PLC whose last free slot
// it holds refused the source's next session meanwhile (before: refused
// for as long as the test waited, BadTooManySessions). The next connection
// closes it first, on a channel of its own: the source is back at once,
// and holds one session.
func TestLostConnectionsSessionIsClosedFromTheNext(t *testing.T) {
	srv := startSlots(t, 1)
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint(), "opc.tcp://"))
	col := newCollector()
	src := runSource(t, Config{
		Endpoint: "opc.tcp://" + crash.Addr(), Nodes: []string{srv.NodeID("Count")},
		PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, slotRetry: 200 * time.Millisecond,
	}, col)
	for i := range 3 {
		// Subscribed: a change is notified.
		srv.Set("Count", int32(10+i))
		col.waitFor(t, 0, 30*time.Second, "the change notified", func(s connectors.Sample) bool { return !s.Initial && s.Value == int64(10+i) })
		from := col.len()
		crash.Crash()
		waitUntil(t, 10*time.Second, func() bool { return src.State() != connectors.StateConnected })
		crash.Restart()
		col.waitFor(t, from, 30*time.Second, "a sample after the cut", func(s connectors.Sample) bool { return s.Initial })
		if n := srv.Sessions().Open(); n != 1 {
			t.Errorf("cut %d: %d sessions open on the server, want the source's one", i+1, n)
		}
	}
	if n := srv.Sessions().Refused(); n != 0 {
		t.Errorf("%d sessions refused for want of a slot", n)
	}
	if n := src.Stats().LeftSessionsClosed; n != 3 {
		t.Errorf("%d left sessions closed, want 3", n)
	}
}

// The same against node-opcua, a server that binds a session to its
// secure channel, limits sessions (MAX_SESSIONS) and counts them itself,
// over Basic256Sha256 SignAndEncrypt with a user: the session a cut left
// is activated again on a channel of its own (signed anew, the password
// encrypted with the server's last nonce) and closed, and the source's
// next session takes the one slot at once.
func TestLostConnectionsSessionIsClosedFromTheNextSecure(t *testing.T) {
	srv := startNodeServer(t, "MAX_SESSIONS=1")
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	col := newCollector()
	src := runSource(t, Config{
		Name: "secure", Endpoint: "opc.tcp://" + crash.Addr(), SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		Username: "operator", Password: "s3cret", DataDir: t.TempDir(), Nodes: []string{secureCounter},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, slotRetry: 200 * time.Millisecond,
	}, col)
	for i := range 2 {
		// Subscribed: the counter (up every 200 ms) is notified.
		col.waitFor(t, col.len(), 30*time.Second, "a notified counter", func(s connectors.Sample) bool { return !s.Initial })
		from := col.len()
		crash.Crash()
		waitUntil(t, 10*time.Second, func() bool { return src.State() != connectors.StateConnected })
		crash.Restart()
		col.waitFor(t, from, 30*time.Second, "a sample after the cut", func(s connectors.Sample) bool { return s.Initial })
		if n := srv.sessions.Load(); n != 1 {
			t.Errorf("cut %d: the server counts %d sessions, want the source's one", i+1, n)
		}
	}
	if st := src.Stats(); st.LeftSessionsClosed != 2 || strings.Contains(st.LastError, "TooManySessions") {
		t.Errorf("%d left sessions closed, want 2; last error %q", st.LeftSessionsClosed, st.LastError)
	}
}

// Every way a session of the source, validate --opcua (Inspect) or browse
// ends closes it on the server (CloseSession, its subscriptions deleted),
// counted on gopcua's server, which never drops a session by itself: a
// cut of the link (closed from the next connection), the heartbeat
// declaring the server silent, the source stopped (a reload, SIGTERM),
// an Inspect, a Browse.
func TestEveryWayASessionEndsClosesIt(t *testing.T) {
	ts := startInProcess(t, 0)
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(ts.url, "opc.tcp://"))
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := New(Config{Name: "line1", Endpoint: "opc.tcp://" + crash.Addr(), Nodes: []string{"ns=1;s=Counter"},
		PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, col)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	open := func(way string, want int) {
		t.Helper()
		if n := ts.sessions.Open(); n != want {
			t.Errorf("after %s: %d sessions open on the server, want %d", way, n, want)
		}
	}
	col.waitFor(t, 0, 15*time.Second, "first sample", func(s connectors.Sample) bool { return s.Initial })
	open("connecting", 1)

	from := col.len()
	crash.Crash()
	waitUntil(t, 10*time.Second, func() bool { return src.State() != connectors.StateConnected })
	crash.Restart()
	col.waitFor(t, from, 15*time.Second, "a sample after the cut", func(s connectors.Sample) bool { return s.Initial })
	open("a cut", 1)

	from = col.len()
	ts.silent.Store(true)
	waitUntil(t, 20*time.Second, func() bool { return src.Stats().HeartbeatRebuilds > 0 })
	ts.silent.Store(false)
	col.waitFor(t, from, 15*time.Second, "a sample after the heartbeat's rebuild", func(s connectors.Sample) bool { return s.Initial })
	open("the heartbeat", 1)

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	open("the source stopped", 0)

	if _, err := Inspect(context.Background(), Config{Name: "line1", Endpoint: ts.url, Nodes: []string{"ns=1;s=Counter"}}); err != nil {
		t.Fatal(err)
	}
	open("Inspect", 0)
	if err := Browse(context.Background(), ts.url, BrowseOptions{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	open("Browse", 0)
	if n := ts.sessions.KeptSubscriptions(); n != 0 {
		t.Errorf("%d sessions closed keeping their subscriptions", n)
	}
}

// A server that publishes no faster than every 1.5 s (node-opcua's
// fastest publishing interval raised: the subscription asking 100 ms is
// revised to 1.5 s) sends nothing for longer than a 1 s heartbeat_timeout
// between its notifications: the source declared it silent at each (5
// sessions in 8 s, for good). The heartbeat waits twice the revised
// interval, said once as a warning; the session lasts across the
// notifications.
func TestRevisedPublishingIntervalStretchesTheHeartbeat(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "MIN_PUBLISHING_MS=1500")
	col := newCollector()
	var logs lockedLog
	src := runSource(t, Config{Endpoint: srv.Endpoint, Nodes: []string{secureCounter},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil))}, col)
	// Four notified counter values: 4.5 s at least, four heartbeat timeouts.
	for range 4 {
		col.waitFor(t, col.len(), 30*time.Second, "a notified counter", func(s connectors.Sample) bool { return !s.Initial })
	}
	if st := src.Stats(); st.HeartbeatRebuilds != 0 || st.SessionsCreated != 1 {
		t.Errorf("%d heartbeat rebuilds, %d sessions: want none and one", st.HeartbeatRebuilds, st.SessionsCreated)
	}
	if n := strings.Count(logs.String(), "the server publishes no faster than"); n != 1 {
		t.Errorf("the revised interval said %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "publishing_interval_revised=1.5s") || !strings.Contains(logs.String(), "heartbeat=3s") {
		t.Errorf("the warning does not give the revised interval and the heartbeat:\n%s", logs.String())
	}
}

// A server that revises the session lifetime UP (node-opcua's with
// MIN_SESSION_TIMEOUT_MS: the 1 s asked here revised to 60 s; a PLC with
// a fixed session timeout does so) keeps a session a cut of the link left
// for the lifetime it gave. The source forgot that session once the
// lifetime it had asked had passed, and left it to hold the server's one
// slot: its next session was refused (BadTooManySessions) until the
// server dropped the left one, 60 s after the cut. It closes it first,
// as within the lifetime asked: back at once, the left session closed.
func TestLostConnectionsSessionIsClosedWithinTheLifetimeTheServerGave(t *testing.T) {
	const asked = time.Second
	srv := startNodeServer(t, "NO_SECURITY=1", "MAX_SESSIONS=1", "MIN_SESSION_TIMEOUT_MS=60000")
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	col := newCollector()
	src := runSource(t, Config{Endpoint: "opc.tcp://" + crash.Addr(), Nodes: []string{secureCounter},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second, sessionTimeout: asked,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, slotRetry: 200 * time.Millisecond}, col)
	col.waitFor(t, 0, 30*time.Second, "a first sample", func(s connectors.Sample) bool { return s.Initial })
	tried := src.Stats().ConnectAttempts
	from := col.len()
	crash.Crash()
	// A connection tried after the cut: the session the cut left is the
	// source's orphan from before then. Then the lifetime asked passes
	// (twice over) while the link stays cut.
	waitUntil(t, 30*time.Second, func() bool { return src.Stats().ConnectAttempts > tried })
	cut := time.Now()
	waitUntil(t, 30*time.Second, func() bool { return time.Since(cut) > 2*asked })
	crash.Restart()
	col.waitFor(t, from, 120*time.Second, "a sample after the cut", func(s connectors.Sample) bool { return s.Initial })
	if st := src.Stats(); st.LeftSessionsClosed != 1 || strings.Contains(st.LastError, "TooManySessions") {
		t.Errorf("%d left sessions closed, want 1; last error %q", st.LeftSessionsClosed, st.LastError)
	}
	if n := srv.sessions.Load(); n != 1 {
		t.Errorf("the server counts %d sessions, want the source's one", n)
	}
}

// The same at the stop: closeLeft closes the session a cut left while the
// server keeps it, for the lifetime it gave (60 s), not the one asked
// (1 s), which had passed: it left it (the server counted it for 60 s).
func TestStopClosesTheLeftSessionWithinTheLifetimeTheServerGave(t *testing.T) {
	const asked = time.Second
	srv := startNodeServer(t, "NO_SECURITY=1", "MAX_SESSIONS=1", "MIN_SESSION_TIMEOUT_MS=60000")
	src, err := New(Config{Name: "line1", Endpoint: srv.Endpoint, Nodes: []string{secureCounter}, sessionTimeout: asked}, newCollector())
	if err != nil {
		t.Fatal(err)
	}
	// A session of the source's options, whose link is cut: detached, its
	// channel closed, the server holds it.
	opts := []opcua.Option{opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false), opcua.SessionTimeout(asked)}
	c, err := opcua.NewClient(srv.Endpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sess, err := c.DetachSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closeClient(c)
	if got := sess.RevisedTimeout(); got != time.Minute {
		t.Fatalf("the server gave the session %v, want 1m0s", got)
	}
	waitUntil(t, 30*time.Second, func() bool { return srv.sessions.Load() == 1 })
	// Left past the lifetime asked (not waited for: Run's goroutine is
	// not running, the test is).
	src.orphan, src.orphanAt = sess, time.Now().Add(-2*asked)
	src.opts.Store(&opts)
	src.closeLeft()
	if n := src.Stats().LeftSessionsClosed; n != 1 {
		t.Errorf("%d left sessions closed at the stop, want 1", n)
	}
	waitUntil(t, 30*time.Second, func() bool { return srv.sessions.Load() == 0 })
}
