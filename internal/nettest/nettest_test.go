package nettest

import (
	"io"
	"net"
	"slices"
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

// FreePort gives a port again only once every other port of its range was
// given: a port given to one test stays free until that test's server
// listens (an agent's API once its buffer is open, and between two runs),
// and given to another test meanwhile, one of the two servers could not
// listen.
func TestFreePortGivesEveryOtherPortBeforeOneAgain(t *testing.T) {
	// Below the ephemeral range: no outgoing connection holds one of them.
	t.Setenv(PortsEnv, "20000-20009")
	for p := 20000; p <= 20009; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Skipf("port %d of the range is taken here: %v", p, err)
		}
		l.Close()
	}
	var got []int
	for range 10 {
		n := FreePort(t)
		if slices.Contains(got, n) {
			t.Fatalf("FreePort gave %d again after %v, before the range's other ports", n, got)
		}
		got = append(got, n)
	}
	if n := FreePort(t); n != got[0] {
		t.Errorf("after %v FreePort gave %d, want %d: given longest ago", got, n, got[0])
	}
}

// Reset drops the proxied connections and leaves the port open: the next
// connect is taken at once, none refused (Crash's is, until Restart).
func TestCrashProxyResetKeepsThePortOpen(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	px := NewCrashProxy(t, target.Addr().String())
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	c, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	px.Reset()
	if err := echo(c); err == nil {
		t.Fatal("a connection of before the reset still carries")
	}
	c2, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatalf("connect right after the reset: %v", err)
	}
	defer c2.Close()
	if err := echo(c2); err != nil {
		t.Fatalf("a connection after the reset: %v", err)
	}
}
