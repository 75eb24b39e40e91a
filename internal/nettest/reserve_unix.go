//go:build unix

package nettest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Reserved is a loopback port held by a socket bound to it that does not
// listen: a connection to it is refused, as to a port nothing listens on,
// yet nothing takes the port meanwhile — not a server of the test (an
// agent's API), not FreePort in this or another test binary — until
// Listen makes the socket the listener, or the test ends. It is the
// address of a server that is down, then comes up. (The socket binds with
// SO_REUSEADDR, past connections of an earlier server of the port in
// TIME_WAIT, as Go's listeners do; then clears it: the kernel lets no
// other socket bind the port beside one without it. It sets it again to
// listen.)
type Reserved struct {
	mu   sync.Mutex
	fd   int // -1 once it listens or is released
	port int
}

// ReservePort reserves a loopback port picked as FreePort picks one, other
// than the ports of avoid (host:port addresses a server of the test will
// take but has not yet: an agent's API before its start). It is released
// at the end of the test.
func ReservePort(t testing.TB, avoid ...string) *Reserved {
	t.Helper()
	skip := map[int]bool{}
	for _, a := range avoid {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				skip[n] = true
			}
		}
	}
	r := &Reserved{fd: -1}
	take := func(port int) bool {
		if port != 0 && skip[port] {
			return false
		}
		fd, got, err := bindLoopback(port)
		if err != nil {
			return false
		}
		if skip[got] { // the kernel's pick
			syscall.Close(fd)
			return false
		}
		r.fd, r.port = fd, got
		return true
	}
	if pickPort(t, take) == 0 {
		for i := 0; !take(0); i++ {
			if i == 100 {
				t.Fatal("nettest: no loopback port to reserve")
			}
		}
	}
	t.Cleanup(r.release)
	return r
}

// bindLoopback binds a new TCP socket to 127.0.0.1:port (0: the kernel
// picks) and returns it with its port.
func bindLoopback(port int) (fd, got int, err error) {
	syscall.ForkLock.RLock() // no child started meanwhile inherits it
	fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, 0, err
	}
	err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err == nil {
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, 0, err
	}
	sa, err := syscall.Getsockname(fd)
	in4, ok := sa.(*syscall.SockaddrInet4)
	if err != nil || !ok {
		syscall.Close(fd)
		return -1, 0, errors.New("nettest: no port bound")
	}
	return fd, in4.Port, nil
}

// Port is the reserved port.
func (r *Reserved) Port() int { return r.port }

// Addr is the reserved port's host:port.
func (r *Reserved) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Listen makes the reserved socket a listener: the port is never free in
// between. It can be called once.
func (r *Reserved) Listen() (net.Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil, errors.New("nettest: the reserved port listens already, or was released")
	}
	fd := r.fd
	r.fd = -1
	err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err == nil {
		err = syscall.Listen(fd, syscall.SOMAXCONN)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "reserved "+r.Addr())
	defer f.Close() // the listener has a duplicate
	return net.FileListener(f)
}

// release closes the socket if it does not listen.
func (r *Reserved) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		syscall.Close(r.fd)
		r.fd = -1
	}
}
