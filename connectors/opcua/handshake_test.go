package opcua

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/uacp"
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
	_, st, ok := runUntilSample(t, Config{Endpoint: "opc.tcp://" + srv.ln.Addr().String(), DataDir: t.TempDir(),
		Nodes: []string{"ns=2;s=Counter"}, RequestTimeout: time.Second}, 3*time.Second)
	if ok || st.SessionsCreated != 0 {
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
