package agent

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// One host other than this one gets at most maxAPIConnsPerHost connections:
// the next is closed at once, and a slot it frees is taken again.
func TestAPIListenerSharesConnectionsFairly(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitAPI(raw).(*apiListener)
	l.hostOf = func(net.Conn) string { return "10.0.0.9" } // every client another host
	defer l.Close()
	accepted := make(chan net.Conn, 2*maxAPIConnsPerHost)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	var server []net.Conn
	for range maxAPIConnsPerHost {
		dial()
		server = append(server, <-accepted)
	}
	// One more from that host: closed by the listener, never handed out.
	extra := dial()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		if ne, ok := err.(net.Error); !ok || ne.Timeout() {
			t.Fatalf("the connection over the host's share: read %v, want it closed", err)
		}
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the host's share was handed out: %v", c.RemoteAddr())
	default:
	}
	// A slot freed is taken again.
	server[0].Close()
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after one of the host's was closed")
	}
	for _, c := range server[1:] {
		c.Close()
	}
}
