package opcua

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/uacp"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nettest"
)

// fakeAckServer answers every Hello with ack and records the type of each
// message it gets after that (a client that trusted the ack sends OPN).
type fakeAckServer struct {
	ln    net.Listener
	ack   uacp.Acknowledge
	mu    sync.Mutex
	hello int
	after []string
	wg    sync.WaitGroup
}

func startFakeAckServer(t *testing.T, ack uacp.Acknowledge) *fakeAckServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeAckServer{ln: ln, ack: ack}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *fakeAckServer) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	read := func() string {
		b := make([]byte, 8)
		if _, err := io.ReadFull(c, b); err != nil {
			return ""
		}
		var h uacp.Header
		if _, err := h.Decode(b); err != nil || h.MessageSize < 8 || h.MessageSize > 1<<16 {
			return ""
		}
		if _, err := io.ReadFull(c, make([]byte, h.MessageSize-8)); err != nil {
			return ""
		}
		return h.MessageType
	}
	if read() != "HEL" {
		return
	}
	body, _ := s.ack.Encode()
	h := uacp.Header{MessageType: "ACK", ChunkType: 'F', MessageSize: uint32(8 + len(body))}
	hdr, _ := h.Encode()
	if _, err := c.Write(append(hdr, body...)); err != nil {
		return
	}
	s.mu.Lock()
	s.hello++
	s.mu.Unlock()
	if typ := read(); typ != "" {
		s.mu.Lock()
		s.after = append(s.after, typ)
		s.mu.Unlock()
	}
}

// A server (the security probe's 28-byte fake) that answers Hello with a
// receive buffer of almost 4 GiB: gopcua would allocate that much for the
// next message it reads, and the agent died of it at every reconnect. The
// connection is refused before gopcua makes it, and the source says why.
func TestServerAnnouncingHugeBuffersIsRefused(t *testing.T) {
	srv := startFakeAckServer(t, uacp.Acknowledge{ReceiveBufSize: 0xFFFFFFF0, SendBufSize: 8192})
	// Until the source has said why (or connected: it must not), not a
	// fixed 3 s with 1 s to dial: on a loaded CI machine the dial itself
	// timed out within them and the refusal never came.
	sampled := false
	st, _ := runUntil(t, Config{Endpoint: "opc.tcp://" + srv.ln.Addr().String(), DataDir: t.TempDir(),
		Nodes: []string{"ns=2;s=Counter"}, RequestTimeout: 5 * time.Second}, 30*time.Second, func(samples []connectors.Sample, st Stats) bool {
		sampled = len(samples) > 0
		return sampled || st.SessionsCreated != 0 || strings.Contains(st.LastError, ErrServerLimits.Error())
	})
	if sampled || st.SessionsCreated != 0 {
		t.Fatalf("connected: stats %+v", st)
	}
	if !strings.Contains(st.LastError, ErrServerLimits.Error()) || !strings.Contains(st.LastError, "4294967280") {
		t.Errorf("LastError = %q, want the refused buffer size", st.LastError)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.hello == 0 {
		t.Fatal("the server got no Hello")
	}
	if len(srv.after) > 0 {
		t.Errorf("the client went on after the server's Acknowledge: %v", srv.after)
	}
}

func TestAckWithinLimits(t *testing.T) {
	for _, c := range []struct {
		recv, chunks uint32
		ok           bool
	}{
		{8192, 0, true},        // as asked; gopcua's 512 chunks: 4 MiB
		{65535, 0, true},       // a server announcing its own size anyway
		{65535, 5000, true},    // 327 MB
		{1 << 20, 0, true},     // 512 MiB
		{1<<20 + 1, 1, false},  // one chunk beyond the bound
		{8192, 1 << 20, false}, // 8 GiB of chunks
		{0xFFFFFFF0, 0, false},
	} {
		err := ackWithinLimits(&uacp.Acknowledge{ReceiveBufSize: c.recv, SendBufSize: 8192, MaxChunkCount: c.chunks})
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrServerLimits)) {
			t.Errorf("receive buffer %d, %d chunks: %v, want ok %v", c.recv, c.chunks, err, c.ok)
		}
	}
}

// A server that opens its port and never answers (a PLC half up, a port
// forward to nothing) does not hold a stopping source: dial returns as soon
// as its context is cancelled, however long the request timeout, and the
// connection it opened is closed (the lifecycle review: every stop waited
// out the 10 s timeout).
func TestDialToASilentServerEndsWhenCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // answers nothing
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c, err := dial(ctx, clientParams{endpoint: "opc.tcp://" + ln.Addr().String(), requestTimeout: time.Hour})
		if c != nil {
			closeClient(c)
		}
		done <- err
	}()
	conn := <-accepted
	defer conn.Close()
	// The client's Hello came: it waits for the answer now.
	hello := make([]byte, 8)
	if _, err := io.ReadFull(conn, hello); err != nil || string(hello[:3]) != "HEL" {
		t.Fatalf("no Hello: %q, %v", hello, err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("dial cancelled: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second): // a hang guard: the attempt's own timeout is an hour
		t.Fatal("dial to a silent server went on after its context was cancelled")
	}
	// The attempt ended too: the connection it opened is closed.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("the attempt's connection was not closed: %v", err)
	}
}

// serviceGate passes the transport of an OPC UA server (Hello,
// OpenSecureChannel) but, while closed, swallows every service request
// (MSG chunks): a server whose TCP stack and secure channel layer answer
// while its application does not (a PLC runtime hung, a gateway whose
// backend is gone).
type serviceGate struct{ open atomic.Bool }

// forward copies the client's chunks to the server, but for the MSG ones
// while the gate is closed (nettest.PipeProxy's up).
func (g *serviceGate) forward(dst, src net.Conn) {
	forwardChunks(dst, src, func(h uacp.Header, _ []byte) bool { return h.MessageType != "MSG" || g.open.Load() })
}

// forwardChunks copies the OPC UA chunks src sends to dst, those pass
// lets through (it sees each chunk's header and body), until either side
// closes.
func forwardChunks(dst, src net.Conn, pass func(h uacp.Header, body []byte) bool) {
	defer dst.Close()
	defer src.Close()
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		var h uacp.Header
		if _, err := h.Decode(hdr); err != nil || h.MessageSize < 8 {
			return
		}
		body := make([]byte, h.MessageSize-8)
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		if !pass(h, body) {
			continue
		}
		if _, err := dst.Write(append(append([]byte(nil), hdr...), body...)); err != nil {
			return
		}
	}
}

// A server that answers the transport but no service request (PEERS.md:
// the client that waited for good on a CreateSession never answered) does
// not hold the source: each attempt ends at its bound with an error that
// says so, attempts keep to the backoff, and once the server answers the
// source connects and reads.
func TestServerNotAnsweringServiceRequests(t *testing.T) {
	ts := startInProcess(t, 0)
	var gate serviceGate
	px := nettest.PipeProxy(t, strings.TrimPrefix(ts.url, "opc.tcp://"), gate.forward, func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	})
	col := newCollector()
	src := runSource(t, Config{
		Endpoint: "opc.tcp://" + px, Nodes: []string{"ns=1;s=Counter"},
		RequestTimeout: 500 * time.Millisecond, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second,
	}, col)
	time.Sleep(5 * time.Second)
	st := src.Stats()
	if st.SessionsCreated != 0 || col.len() != 0 || src.State() == connectors.StateConnected {
		t.Fatalf("connected through a server that answers no service request: %+v", st)
	}
	// Each attempt waits at most 2 × request_timeout, then the backoff
	// (100 ms doubling to 1 s): over 5 s a few attempts, neither one
	// stuck nor a storm.
	if st.ConnectAttempts < 2 || st.ConnectAttempts > 10 {
		t.Errorf("%d connect attempts in 5 s against a silent application, want 2-10", st.ConnectAttempts)
	}
	if !strings.Contains(st.LastError, "deadline") && !strings.Contains(st.LastError, "timeout") && !strings.Contains(st.LastError, "timed out") {
		t.Errorf("LastError = %q, want it to say the request timed out", st.LastError)
	}
	gate.open.Store(true)
	_, _ = col.waitFor(t, 0, 15*time.Second, "a sample once the server answers", func(s connectors.Sample) bool { return s.Initial })
}
