package mqtt

import (
	"bufio"
	"net"
	"net/url"
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
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, connReadBuffer)}, nil
}
