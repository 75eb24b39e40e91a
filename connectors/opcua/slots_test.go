package opcua

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
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
		"which the server drops after their lifetime: 2 minutes for plantedge's"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last error %q does not say %q", st.LastError, want)
		}
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
// code, wrapped: NoSessionSlot finds it, and the hint keeps it.
func TestNoSessionSlotHintKeepsTheStatus(t *testing.T) {
	err := slotHint(ua.StatusBadTooManySessions, 4*time.Minute)
	if !NoSessionSlot(err) || !strings.Contains(err.Error(), "4 minutes") {
		t.Errorf("%v", err)
	}
	if NoSessionSlot(ua.StatusBadUserAccessDenied) {
		t.Error("a refused login is not a full server")
	}
}
