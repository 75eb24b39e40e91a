package opcuatest

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// startPress starts a server with one variable, Press.Count (5), closed
// when the test ends; ctx ends 20 s after it started.
func startPress(t *testing.T) (context.Context, *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	s, err := Start(ctx, 0, map[string]any{"Press.Count": int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return ctx, s
}

func TestSetAndRead(t *testing.T) {
	ctx, s := startPress(t)
	c, err := opcua.NewClient(s.Endpoint(), opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	read := func() any {
		t.Helper()
		id := ua.MustParseNodeID(s.NodeID("Press.Count"))
		resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: id, AttributeID: ua.AttributeIDValue}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Results[0].Status != ua.StatusOK {
			t.Fatalf("status %v", resp.Results[0].Status)
		}
		return resp.Results[0].Value.Value()
	}
	if got := read(); got != int64(5) {
		t.Fatalf("got %v (%T), want 5", got, got)
	}
	s.Set("Press.Count", int64(9))
	if got := read(); got != int64(9) {
		t.Fatalf("got %v, want 9", got)
	}
}
