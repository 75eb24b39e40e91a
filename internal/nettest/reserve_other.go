//go:build !unix

package nettest

import (
	"net"
	"strconv"
	"testing"
)

// Reserved is a loopback port for a server that is down, then comes up.
// Here (not unix) the port is only picked as FreePort picks one, not held.
type Reserved struct{ port int }

// ReservePort picks a loopback port as FreePort does, other than the ports
// of avoid (host:port addresses a server of the test will take).
func ReservePort(t testing.TB, avoid ...string) *Reserved {
	t.Helper()
	for range 100 {
		port := FreePort(t)
		taken := false
		for _, a := range avoid {
			if _, p, err := net.SplitHostPort(a); err == nil && p == strconv.Itoa(port) {
				taken = true
			}
		}
		if !taken {
			return &Reserved{port: port}
		}
	}
	t.Fatal("nettest: no loopback port to reserve")
	return nil
}

// Port is the reserved port.
func (r *Reserved) Port() int { return r.port }

// Addr is the reserved port's host:port.
func (r *Reserved) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Listen listens on the port.
func (r *Reserved) Listen() (net.Listener, error) { return net.Listen("tcp", r.Addr()) }
