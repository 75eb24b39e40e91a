// Package nettest has helpers for tests of network failures: TCP proxies
// for a server that crashes and comes back, for a link with latency and
// for a link that goes silent (BlackHole) or stalls and comes back
// (Stall; listening on 127.0.0.1 only), loopback ports (FreePort, and
// ReservePort for a server that is down, then comes up), and LiveHeap to
// see whether memory grows across reconnects.
package nettest

import (
	"cmp"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FreePort returns a loopback port that was free a moment ago, for a server
// a test starts later or starts again on the same port (a broker restarted,
// an agent's API across restarts). The port is taken below the kernel's
// ephemeral range, so a server or client that binds port 0 meanwhile — an
// Odoo emulator, a proxy, an outgoing connection — is never handed it while
// it is free (CI: an emulator started while the agent was stopped took the
// agent's port). Where that range cannot be read or leaves no room below it,
// the kernel picks.
//
// With PortsEnv set ("52200-52299") the port is taken from that range: a
// machine shared by test runs that each keep to ports of their own. (Such
// a range may lie in the ephemeral one, which the paragraph above avoids.)
func FreePort(t testing.TB) int {
	t.Helper()
	port := pickPort(t, func(port int) bool {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
	if port != 0 {
		return port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pickPort returns the first of FreePort's candidates that take takes: from
// PortsEnv's range (failing t when none is taken), else below the
// ephemeral range; 0 when there is no room there or none was taken (the
// caller then has the kernel pick). A port it returned once is tried again
// only after every other of the range (handedOut).
func pickPort(t testing.TB, take func(port int) bool) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if lo, hi, ok := portsFromEnv(); ok {
		if port := pickFrom(lo, hi, 200, take); port != 0 {
			return port
		}
		t.Fatalf("no free port in %s=%s", PortsEnv, os.Getenv(PortsEnv))
	}
	if lo, ok := ephemeralLow(); ok && lo > freePortLow+1000 {
		return pickFrom(freePortLow, lo-1, 100, take)
	}
	return 0
}

// handedOut is when (a count) pickPort returned each port it returned in
// this process. A port given to one test is free until its server listens
// — an agent's API only once its buffer file is open, and again between two
// runs of it — and FreePort found it free for another test meanwhile: the
// server that bound it second did not start (agent: "listen …: address
// already in use", which its test took, 60 s later, for sources that never
// connected).
var handedOut struct {
	sync.Mutex
	n  uint64
	at map[int]uint64
}

// pickFrom tries at most tries ports of [lo, hi]: those never returned in
// random order, then those returned longest ago first; it returns the
// first that take takes, noted in handedOut, or 0. handedOut is locked.
func pickFrom(lo, hi, tries int, take func(port int) bool) int {
	ports := make([]int, 0, hi-lo+1)
	for p := lo; p <= hi; p++ {
		ports = append(ports, p)
	}
	rand.Shuffle(len(ports), func(i, j int) { ports[i], ports[j] = ports[j], ports[i] })
	slices.SortStableFunc(ports, func(a, b int) int { return cmp.Compare(handedOut.at[a], handedOut.at[b]) })
	for _, port := range ports[:min(tries, len(ports))] {
		if take(port) {
			if handedOut.at == nil {
				handedOut.at = map[int]uint64{}
			}
			handedOut.n++
			handedOut.at[port] = handedOut.n
			return port
		}
	}
	return 0
}

// PortsEnv names the range of ports FreePort keeps to when set ("lo-hi").
const PortsEnv = "PLANTEDGE_TEST_PORTS"

// portsFromEnv is the range PortsEnv gives, if it gives one.
func portsFromEnv() (lo, hi int, ok bool) {
	l, h, found := strings.Cut(os.Getenv(PortsEnv), "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(l))
	hi, err2 := strconv.Atoi(strings.TrimSpace(h))
	return lo, hi, err1 == nil && err2 == nil && 0 < lo && lo <= hi && hi < 65536
}

// freePortLow is the lowest port FreePort hands out: above the registered
// ports services on a CI machine commonly listen on.
const freePortLow = 20000

// ephemeralLow is the lowest port the kernel hands out for port 0.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	lo, err := strconv.Atoi(f[0])
	return lo, err == nil
}

// LiveHeap is the heap in use after a full collection.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// CrashProxy forwards TCP connections to a server. Crash drops every
// connection and closes the port, so new connections are refused; Restart
// opens the same port again. The clients' side is reset (RST, like a dead
// host's kernel); the server's side is closed plainly (FIN): gopcua's test
// server stops accepting for good when a connection is reset during its
// HEL/ACK handshake (its accept loop takes any *net.OpError for its own
// socket closing), and the server is not what these tests are about.
type CrashProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool // true: a client's side
	wg    sync.WaitGroup
}

// NewCrashProxy starts a proxy to target (host:port) on a free loopback
// port; it is crashed for good at the end of the test.
func NewCrashProxy(t testing.TB, target string) *CrashProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	px := &CrashProxy{t: t, addr: addr, target: target, conns: map[net.Conn]bool{}}
	px.Restart()
	t.Cleanup(func() {
		px.Crash()
		px.wg.Wait()
	})
	return px
}

// Addr is the proxy's host:port.
func (px *CrashProxy) Addr() string { return px.addr }

// Restart listens again on the same port.
func (px *CrashProxy) Restart() {
	px.t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port may linger for a moment after Close
		if l, err = net.Listen("tcp", px.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		px.t.Fatalf("proxy listen: %v", err)
	}
	px.mu.Lock()
	px.l = l
	px.mu.Unlock()
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", px.target)
			if err != nil {
				c.Close()
				continue
			}
			px.mu.Lock()
			if px.l != l {
				// Crashed while this one was being connected: it dies too.
				px.mu.Unlock()
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				up.Close()
				return
			}
			px.conns[c], px.conns[up] = true, false
			px.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer px.wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			px.wg.Add(2)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
}

// Crash closes the listener and resets every proxied connection.
func (px *CrashProxy) Crash() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.l != nil {
		px.l.Close()
		px.l = nil
	}
	px.resetConns()
}

// Reset resets every proxied connection and keeps the port open: a server
// back at once, whose port refuses no connect. Crash then Restart leaves a
// moment in which a client's reconnect is refused, however soon Restart is
// called (on a loaded machine the client's goroutines may run first): a
// test that reads what the loss alone leaves (the last error) uses Reset.
func (px *CrashProxy) Reset() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.resetConns()
}

// resetConns resets every proxied connection; px.mu is held.
func (px *CrashProxy) resetConns() {
	for c, client := range px.conns {
		if tc, ok := c.(*net.TCPConn); ok && client {
			_ = tc.SetLinger(0)
		}
		c.Close()
		delete(px.conns, c)
	}
}

// LatencyProxy forwards connections to target (host:port) on a free
// loopback port and delays what passes by oneWay in each direction, without
// limiting throughput. It returns the proxy's host:port.
func LatencyProxy(t testing.TB, target string, oneWay time.Duration) string {
	t.Helper()
	delay := func(dst, src net.Conn) { delayPipe(dst, src, oneWay) }
	return PipeProxy(t, target, delay, delay)
}

// PipeProxy forwards connections to target (host:port) on a free loopback
// port: up copies what a client sends to the target's side, down what the
// target answers to the client's, each closing both when it ends. Every
// connection is closed at the end of the test. It returns the proxy's
// host:port.
func PipeProxy(t testing.TB, target string, up, down func(dst, src net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			target, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, target)
			mu.Unlock()
			wg.Go(func() { up(target, c) })
			wg.Go(func() { down(c, target) })
		}
	})
	return l.Addr().String()
}

// delayPipe copies src to dst, each read d later than it arrived.
func delayPipe(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range ch { // drained to the end, so the reader never blocks
		if failed {
			continue
		}
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			dst.Close()
			src.Close()
		}
	}
	dst.Close()
	src.Close()
}

// BlackHole is a switch for PipeProxy's pipes (Pipe as both up and down):
// it forwards until Swallow, and from then on reads and drops what either
// side sends while keeping every connection open — a link whose cable was
// pulled or whose router died: no FIN, no RST, no answer, so only a
// client's own timeouts and heartbeats can tell.
type BlackHole struct{ swallow atomic.Bool }

// Swallow makes the link silent from now on, in both directions.
func (b *BlackHole) Swallow() { b.swallow.Store(true) }

// Pipe copies src to dst until Swallow, then drops what src sends; it
// closes both when src ends or dst fails.
func (b *BlackHole) Pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.swallow.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Stall is a switch for PipeProxy's pipes (Pipe as both up and down): it
// forwards until Hold, then keeps what either side sends, with every
// connection open (a link stalled: no FIN, no RST, nothing through), and
// passes on what it kept, in order, at Release — answers that come late,
// after a client may have given up on them — or at Drop closes the
// connections open then, what they kept lost, and forwards new ones.
type Stall struct {
	mu      sync.Mutex
	held    bool
	release chan struct{} // closed at Release or Drop
	drop    chan struct{} // closed at Drop: the pipes of then end
}

// dropped is the channel the next Drop closes.
func (s *Stall) dropped() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drop == nil {
		s.drop = make(chan struct{})
	}
	return s.drop
}

// Drop closes the connections open now, without passing on what they
// kept (a link that died), and forwards new ones.
func (s *Stall) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drop != nil {
		close(s.drop)
		s.drop = nil
	}
	if s.held {
		s.held = false
		close(s.release)
	}
}

// Hold stalls the link from now on, in both directions.
func (s *Stall) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		s.held, s.release = true, make(chan struct{})
	}
}

// Held reports whether the link is held (Hold, no Release since).
func (s *Stall) Held() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Release passes on what was kept and forwards again.
func (s *Stall) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		s.held = false
		close(s.release)
	}
}

// Pipe copies src to dst, keeping what comes while held until Release; it
// closes both when src ends or dst fails.
func (s *Stall) Pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	drop := s.dropped()
	isDropped := func() bool {
		select {
		case <-drop:
			return true
		default:
			return false
		}
	}
	done := make(chan struct{})
	defer close(done)
	chunks := make(chan []byte)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- buf[:n]:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var kept [][]byte
	for {
		s.mu.Lock()
		held, release := s.held, s.release
		s.mu.Unlock()
		if isDropped() {
			return
		}
		if !held {
			for _, b := range kept {
				if _, err := dst.Write(b); err != nil {
					return
				}
			}
			kept, release = nil, nil
		}
		select {
		case b, ok := <-chunks:
			if !ok {
				return
			}
			s.mu.Lock()
			held = s.held
			s.mu.Unlock()
			if held || len(kept) > 0 {
				kept = append(kept, b)
				continue
			}
			if isDropped() {
				return
			}
			if _, err := dst.Write(b); err != nil {
				return
			}
		case <-release:
		case <-drop:
			return
		}
	}
}

// SilentLink carries connections to target (host:port) through a link
// that lose makes silent: what either side sends goes nowhere, every
// connection stays open (a cable pulled, a switch dead: no RST, no FIN).
// back waits until silence has passed since lose — the loss's length is
// what such a test is about — then closes the connections open then (what
// they held lost) and lets new ones through. It returns the link's
// host:port.
func SilentLink(t testing.TB, target string, silence time.Duration) (addr string, lose, back func()) {
	var stall Stall
	addr = PipeProxy(t, target, stall.Pipe, stall.Pipe)
	t.Cleanup(stall.Release)
	var at time.Time
	lose = func() {
		at = time.Now()
		stall.Hold()
	}
	back = func() {
		time.Sleep(time.Until(at.Add(silence)))
		stall.Drop()
	}
	return addr, lose, back
}
