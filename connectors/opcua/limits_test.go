package opcua

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The server's limits per request are logged when they bind, once until
// they change — not at each reconnect (the soak probe: 51 times the same
// line in 27 minutes of server restarts).
func TestLimitsLoggedOnceUntilTheyChange(t *testing.T) {
	var logs bytes.Buffer
	s := &Source{log: slog.New(slog.NewTextHandler(&logs, nil))}
	said := func() int { return strings.Count(logs.String(), "server limits operations per request") }
	for _, c := range []struct {
		read, monitor, want int
	}{
		{maxNodesPerRequest, maxNodesPerRequest, 0}, // no limit binds
		{10, 10, 1},
		{10, 10, 1}, // a reconnect: the same limits
		{10, 10, 1},
		{20, 10, 2}, // changed
		{maxNodesPerRequest, maxNodesPerRequest, 2},
		{20, 10, 3}, // back after a server without limits
	} {
		s.perRead, s.perMonitor = c.read, c.monitor
		s.noteLimits()
		if n := said(); n != c.want {
			t.Fatalf("limits %d/%d: said %d times, want %d\n%s", c.read, c.monitor, n, c.want, logs.String())
		}
	}
}
