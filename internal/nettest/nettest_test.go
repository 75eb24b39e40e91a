package nettest

import (
	"net"
	"strconv"
	"testing"
)

// A port FreePort hands out is one the kernel never gives a port-0 bind, so
// a server started while the address is free cannot take it.
func TestFreePortIsOutsideTheEphemeralRange(t *testing.T) {
	t.Setenv(PortsEnv, "")
	lo, ok := ephemeralLow()
	if !ok || lo <= freePortLow+1000 {
		t.Skip("no room below the ephemeral port range here")
	}
	seen := map[string]bool{}
	for range 20 {
		n := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n))
		if n < freePortLow || n >= lo {
			t.Fatalf("FreePort gave %d, want a port in [%d, %d)", n, freePortLow, lo)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the port FreePort gave is not free: %v", err)
		}
		l.Close()
		seen[addr] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 calls gave %d distinct ports", len(seen))
	}
}

// With PortsEnv set, FreePort keeps to that range (a machine shared by test
// runs that each have ports of their own).
func TestFreePortKeepsToPortsEnv(t *testing.T) {
	t.Setenv(PortsEnv, "52200-52209")
	for range 20 {
		if n := FreePort(t); n < 52200 || n > 52209 {
			t.Fatalf("FreePort gave %d with %s=52200-52209", n, PortsEnv)
		}
	}
}
