package opcua

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A run killed while it connects, its CreateSession answered: gopcua
// v0.8.0 creates and activates the session in one call, Connect (which
// alone starts the client's watch on its channel and its publishing), so
// the session cannot be kept between the two. It is kept once the server
// has activated it (Connect says so before it reads the namespace array);
// it was kept once Connect had returned. Against node-opcua with one
// session slot and every session's lifetime revised down to 10 s:
//
//   - killed before the server activated it (the ActivateSession held):
//     nothing is kept, and keeping it earlier would not help — a session
//     never activated can be neither activated nor closed from another
//     secure channel (Part 4, 5.7.2 and 5.7.3; node-opcua answers
//     BadSessionNotActivated and BadSessionIdInvalid) — but a server out
//     of slots closes the oldest session never activated first (Part 4,
//     5.7.2): the next start connects on the one slot, not refused.
//   - killed once the server had activated it (the namespace read held):
//     it is kept, and the next start closes it first, then connects, not
//     refused. Kept once Connect returned, it was not: the next start was
//     refused (BadTooManySessions) and connected 15 s after its start,
//     once the server had dropped the session at its lifetime's end.
//
// Still not kept: killed after the server activated the session and before
// the client read its answer — the session's next nonce is in that answer,
// and activating it again from another channel needs it; it holds its slot
// until its lifetime ends.
func TestKilledWhileConnectingLeavesNoSessionHoldingASlot(t *testing.T) {
	// The first ActivateSession is the login check's (checkLogin), the
	// second Connect's; the first Read is Connect's.
	t.Run("not activated", func(t *testing.T) { killedConnecting(t, "ActivateSessionRequest:2", false) })
	t.Run("activated", func(t *testing.T) { killedConnecting(t, "ReadRequest:1", true) })
}

func killedConnecting(t *testing.T, hold string, activated bool) {
	srv := startNodeServer(t, "NO_SECURITY=1", "MAX_SESSIONS=1", "SESSION_TIMEOUT_MS=10000", "HOLD="+hold)
	keep := filepath.Join(t.TempDir(), "session")
	cmd, logs, _ := spawnClientChild(t, srv.Endpoint, secureCounter, "", keep)
	select {
	case <-srv.held:
	case <-time.After(60 * time.Second):
		t.Fatalf("the server got no %s to hold in 60 s; the child's log:\n%s", hold, logs)
	}
	if activated {
		// kept by the child's goroutine the server's answer went to
		waitUntil(t, 60*time.Second, func() bool { b, _ := fileKeeper(keep).KeptSession(); return b != nil })
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	b, err := fileKeeper(keep).KeptSession()
	if err != nil {
		t.Fatal(err)
	}
	if !activated && b != nil {
		t.Fatalf("kept before the server activated it: %s", b)
	}
	if activated {
		var k keptSession
		if err := json.Unmarshal(b, &k); err != nil {
			t.Fatalf("kept %q: %v", b, err)
		}
		if k.LifetimeMS != 10000 {
			t.Errorf("kept lifetime %v ms, want the server's 10000", k.LifetimeMS)
		}
	}
	waitUntil(t, 60*time.Second, func() bool { return srv.sessions.Load() == 1 }) // the one left
	start := time.Now()
	_, logs, connected := spawnClientChild(t, srv.Endpoint, secureCounter, "", keep)
	select {
	case <-connected:
	case <-time.After(120 * time.Second):
		t.Fatalf("the next start did not connect in 120 s; its log:\n%s", logs)
	}
	t.Logf("the next start connected %v after it started", time.Since(start).Round(time.Second))
	if strings.Contains(logs.String(), "TooManySessions") {
		t.Errorf("the next start was refused for the left session's slot; its log:\n%s", logs)
	}
	waitUntil(t, 60*time.Second, func() bool { return srv.sessions.Load() == 1 })
	// (the child's log comes on a pipe of its own)
	const closed = "closed the session the previous run left on the server"
	if activated {
		waitUntil(t, 60*time.Second, func() bool { return strings.Contains(logs.String(), closed) })
	} else if strings.Contains(logs.String(), closed) {
		t.Errorf("the next start closed a session, none kept; its log:\n%s", logs)
	}
	if b, err := fileKeeper(keep).KeptSession(); b == nil || err != nil {
		t.Errorf("the live session is not kept: %q, %v", b, err)
	}
}
