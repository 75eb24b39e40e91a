package opcuatest

import (
	"context"
	"errors"
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

// WithUser: the server lists a user name token, takes its user with the
// password, and refuses another password, an anonymous session, and the
// old password after SetPassword, with BadUserAccessDenied.
func TestWithUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, 0, map[string]any{"Press.Count": int64(5)}, WithUser("operator", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eps, err := opcua.GetEndpoints(ctx, s.Endpoint())
	if err != nil || len(eps) == 0 {
		t.Fatalf("endpoints: %v %v", eps, err)
	}
	login := func(auth opcua.Option, tokenType ua.UserTokenType) error {
		t.Helper()
		c, err := opcua.NewClient(s.Endpoint(), opcua.SecurityFromEndpoint(eps[0], tokenType), auth, opcua.AutoReconnect(false))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Connect(ctx)
		if err == nil {
			id := ua.MustParseNodeID(s.NodeID("Press.Count"))
			var resp *ua.ReadResponse
			resp, err = c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: id, AttributeID: ua.AttributeIDValue}}})
			if err == nil && resp.Results[0].Value.Value() != int64(5) {
				t.Errorf("read %v", resp.Results[0].Value.Value())
			}
			c.Close(ctx)
		}
		return err
	}
	if err := login(opcua.AuthUsername("operator", "s3cret"), ua.UserTokenTypeUserName); err != nil {
		t.Fatalf("the user with the password: %v", err)
	}
	if err := login(opcua.AuthUsername("operator", "wrong"), ua.UserTokenTypeUserName); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Errorf("a wrong password: %v, want BadUserAccessDenied", err)
	}
	if err := login(opcua.AuthAnonymous(), ua.UserTokenTypeAnonymous); err == nil {
		t.Errorf("anonymous: taken")
	}
	s.SetPassword("n3w")
	if err := login(opcua.AuthUsername("operator", "s3cret"), ua.UserTokenTypeUserName); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Errorf("the old password: %v, want BadUserAccessDenied", err)
	}
	if err := login(opcua.AuthUsername("operator", "n3w"), ua.UserTokenTypeUserName); err != nil {
		t.Errorf("the new password: %v", err)
	}
	if n := s.Refused(); n < 2 {
		t.Errorf("Refused() = %d, want at least 2", n)
	}
}
