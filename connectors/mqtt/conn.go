package mqtt

import (
	"bufio"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// bufferedConn reads its connection through a buffer. paho reads each
// packet's fixed header a byte at a time (packets.ReadPacket: the type
// byte, then each byte of the remaining length) and then its body: three
// read calls a message or more on a bare TCP socket, where one call can
// take all the socket holds (a session's queue after a reconnect is
// thousands of messages). TLS and WebSocket connections read whole records
// and frames already, so only tcp:// and mqtt:// are dialed so.
//
// It writes through a buffer too: paho writes each packet with a call of
// its own, and the PUBACKs of a commit's messages, acknowledged together,
// were a write system call each (15% of the agent's CPU in the IngestMQTT
// benchmark). Write appends to the buffer; a goroutine of the connection
// writes what gathered while its last write went out, in one call, in the
// order written. A write error is returned by the next Write (paho then
// ends the connection, as for one returned at once); Close first sends
// what is buffered (DISCONNECT, the last PUBACKs), for at most
// closeFlushTimeout.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	changed sync.Cond // mu: out taken, written, or failed
	out     []byte    // written by paho, not yet sent
	spare   []byte    // the buffer last sent, for the next out
	sending bool      // the writer holds a buffer it sends
	err     error     // the first write's error: every later Write returns it
	closing bool
	kick    chan struct{} // (1) something to send
	done    chan struct{} // closed by Close: the writer ends
	ended   chan struct{} // closed by the writer as it ends
	once    sync.Once
}

// connWriteBuffer bounds what Write buffers: past it Write waits for the
// writer (the broker not reading holds paho back, as a full socket did).
const connWriteBuffer = 64 << 10

// closeFlushTimeout bounds how long Close waits to send what is buffered.
const closeFlushTimeout = 2 * time.Second

func newBufferedConn(conn net.Conn) *bufferedConn {
	c := &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, connReadBuffer),
		kick: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{})}
	c.changed.L = &c.mu
	go c.writer()
	return c
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write buffers p for the writer (see bufferedConn).
func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closing && len(c.out) >= connWriteBuffer {
		c.changed.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closing:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.out = append(c.out, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writer sends what Write buffered until Close.
func (c *bufferedConn) writer() {
	defer close(c.ended)
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		c.mu.Lock()
		b := c.out
		c.out, c.sending = c.spare[:0], true
		c.changed.Broadcast() // (room for a Write waiting)
		c.mu.Unlock()
		var err error
		if len(b) > 0 {
			_, err = c.Conn.Write(b)
		}
		c.mu.Lock()
		c.spare, c.sending = b[:0], false
		if err != nil && c.err == nil {
			c.err = err
		}
		c.changed.Broadcast()
		c.mu.Unlock()
	}
}

// Close sends what is buffered (at most for closeFlushTimeout), then
// closes the connection.
func (c *bufferedConn) Close() error {
	c.once.Do(func() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		c.mu.Lock()
		c.closing = true
		c.changed.Broadcast() // (a Write waiting for room returns)
		for c.err == nil && (len(c.out) > 0 || c.sending) {
			select {
			case c.kick <- struct{}{}:
			default:
			}
			c.changed.Wait()
		}
		c.mu.Unlock()
		close(c.done)
		<-c.ended
	})
	return c.Conn.Close()
}

// connReadBuffer: an MQTT message of a machine is a few hundred bytes; the
// buffer takes a few dozen at a read.
const connReadBuffer = 16 << 10

// dialBuffered dials tcp:// and mqtt:// as paho does (its dialer, through a
// proxy the environment names) and reads through a buffer (bufferedConn).
func dialBuffered(uri *url.URL, opts paho.ClientOptions) (net.Conn, error) {
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second} // (paho's default)
	}
	conn, err := proxy.FromEnvironmentUsing(d).Dial("tcp", uri.Host)
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}
