//go:build unix

package nettest

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A reserved port refuses connections, as a port nothing listens on does,
// and no listener can take it; Listen makes it the listener, on that port.
func TestReservedPortRefusesAndIsKept(t *testing.T) {
	r := ReservePort(t)
	if c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial of the reserved port: %v, want connection refused", err)
	}
	for _, addr := range []string{r.Addr(), ":" + strconv.Itoa(r.Port())} {
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			t.Fatalf("a listener took the reserved port at %s", addr)
		}
	}
	l, err := r.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().(*net.TCPAddr).Port; got != r.Port() {
		t.Fatalf("listening on %d, want %d", got, r.Port())
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial once it listens: %v", err)
	}
	c.Close()
	if _, err := r.Listen(); err == nil {
		t.Error("a second Listen")
	}
}

// The ports of avoid are never reserved, though free: with a range of two
// ports, the other one is.
func TestReservePortAvoids(t *testing.T) {
	port := 0
	for range 100 {
		p := FreePort(t)
		if lo, hi, ok := portsFromEnv(); ok && (p+1 > hi || p < lo) {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))); err == nil {
			l.Close()
			port = p
			break
		}
	}
	if port == 0 {
		t.Skip("no two free ports in a row")
	}
	t.Setenv(PortsEnv, strconv.Itoa(port)+"-"+strconv.Itoa(port+1))
	for range 20 {
		r := ReservePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if r.Port() != port+1 {
			t.Fatalf("reserved %d, avoiding %d in %d-%d", r.Port(), port, port, port+1)
		}
		r.release()
	}
}

// A port whose last server closed its connections first (they are in
// TIME_WAIT for a minute) is reserved, as a listener takes it: a range of
// one such port is no range without a port (a narrow PortsEnv, a test run
// again).
func TestReservePortPastTimeWait(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close() // first: TIME_WAIT on port
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Read(make([]byte, 1)) // until the server's close
	c.Close()
	l.Close()
	t.Setenv(PortsEnv, strconv.Itoa(port)+"-"+strconv.Itoa(port))
	if r := ReservePort(t); r.Port() != port {
		t.Fatalf("reserved %d, want %d", r.Port(), port)
	}
}
