package opcuatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// WithMaxSessions(2): a third client's CreateSession is refused with
// BadTooManySessions; once a client closes its session, the slot is free
// again. A client that leaves without closing keeps its slot (gopcua's
// server never drops a session by itself).
func TestMaxSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, 0, map[string]any{"Press.Count": int64(5)}, WithMaxSessions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	connect := func() (*opcua.Client, error) {
		c, err := opcua.NewClient(s.Endpoint(), opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
		if err != nil {
			t.Fatal(err)
		}
		return c, c.Connect(ctx)
	}
	a, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	b, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close(ctx) }() // its connection (its session is left below)
	if _, err := connect(); !errors.Is(err, ua.StatusBadTooManySessions) {
		t.Fatalf("a third session: %v, want BadTooManySessions", err)
	}
	if got := [3]int{s.Sessions().Open(), s.Sessions().Created(), s.Sessions().Refused()}; got != [3]int{2, 2, 1} {
		t.Errorf("open, created, refused = %v, want [2 2 1]", got)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := connect()
	if err != nil {
		t.Fatalf("a session after one closed: %v", err)
	}
	defer c.Close(ctx)
	// b leaves without closing its session: its slot stays taken.
	if sc := b.SecureChannel(); sc != nil {
		_ = sc.Close()
	}
	if _, err := connect(); !errors.Is(err, ua.StatusBadTooManySessions) {
		t.Errorf("after a client left without closing: %v, want BadTooManySessions", err)
	}
	if n := s.Sessions().KeptSubscriptions(); n != 0 {
		t.Errorf("%d sessions closed keeping their subscriptions (gopcua's client deletes them)", n)
	}
}
