package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pipePair is a bufferedConn on one end of a synchronous pipe (a write
// waits until the other end reads it), and the other end.
func pipePair(t *testing.T) (*bufferedConn, net.Conn) {
	t.Helper()
	a, peer := net.Pipe()
	c := newBufferedConn(a)
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// What paho writes through a bufferedConn arrives whole and in order, and
// Close sends what is still buffered (paho's DISCONNECT, then Close).
func TestBufferedConnWrites(t *testing.T) {
	c, peer := pipePair(t)
	read := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(peer); read <- b }()
	var want bytes.Buffer
	for i := range 20000 { // past connWriteBuffer: Write waits for room
		p := fmt.Appendf(nil, "packet %d;", i)
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-read; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the peer read %d bytes, not the %d written in order", len(got), want.Len())
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// waitSending waits until c's writer is sending (and more is buffered,
// with more).
func waitSending(t *testing.T, c *bufferedConn, more bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c.mu.Lock()
		ok := c.sending && (!more || len(c.out) > 0)
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer is not sending")
		}
		time.Sleep(time.Millisecond)
	}
}

// Close does not wait for ever on a peer that does not read: what it
// cannot send is given up after closeFlushTimeout (the broker redelivers
// what was not acknowledged), and a Write after it fails.
func TestBufferedConnCloseStuck(t *testing.T) {
	c, _ := pipePair(t) // the peer reads nothing
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	waitSending(t, c, false) // the first, for good
	if _, err := c.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	waitSending(t, c, true)
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close waited on a peer that does not read")
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the write Close gave up on: %v, want a deadline exceeded", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// A write that fails (the peer gone) is said by the next Write, as paho
// needs it to end the connection.
func TestBufferedConnWriteError(t *testing.T) {
	c, peer := pipePair(t)
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	waitSending(t, c, false)
	peer.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Write([]byte("after the peer left"))
		if errors.Is(err, io.ErrClosedPipe) {
			break
		}
		if err != nil {
			t.Fatalf("Write = %v, want the write's error (io.ErrClosedPipe)", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("Write kept succeeding after the peer left")
		}
		time.Sleep(time.Millisecond)
	}
}
