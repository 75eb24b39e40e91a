package mqtttest

import (
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Client is an MQTT client of a harness's own — a gateway or a Sparkplug
// edge node publishing to the broker, not the agent: MQTT 3.1.1, a clean
// session, no reconnecting of its own. Cut drops its connection without a
// DISCONNECT, as a device losing power does, so the broker sends its will.
// (paho is the one package connectors/mqtt owns; a harness reaches it here.)
type Client struct {
	c   paho.Client
	mu  sync.Mutex
	raw net.Conn // the connection under c
}

// Will is a client's last will, which the broker publishes when the
// client's connection ends without a DISCONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Dial connects to the broker at rawURL (tcp://host:port) as clientID,
// leaving will (nil: none), within timeout.
func Dial(rawURL, clientID string, will *Will, timeout time.Duration) (*Client, error) {
	cl := &Client{}
	o := paho.NewClientOptions().AddBroker(rawURL).SetClientID(clientID).SetCleanSession(true).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(timeout).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, timeout)
			cl.mu.Lock()
			cl.raw = c
			cl.mu.Unlock()
			return c, err
		})
	if will != nil {
		o.SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	}
	cl.c = paho.NewClient(o)
	t := cl.c.Connect()
	if !t.WaitTimeout(timeout) {
		cl.c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := t.Error(); err != nil {
		cl.c.Disconnect(0)
		return nil, err
	}
	return cl, nil
}

// Publish publishes payload to topic and waits at most timeout for it to
// be sent (QoS 0) or acknowledged (QoS 1, 2).
func (cl *Client) Publish(topic string, qos byte, retain bool, payload []byte, timeout time.Duration) error {
	t := cl.c.Publish(topic, qos, retain, payload)
	if !t.WaitTimeout(timeout) {
		return errors.New("publish timed out")
	}
	return t.Error()
}

// Subscribe calls fn with each message on filter. fn runs on the client's
// delivery goroutine: it must not block.
func (cl *Client) Subscribe(filter string, qos byte, fn func(topic string, payload []byte)) error {
	t := cl.c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) })
	if !t.WaitTimeout(5 * time.Second) {
		return errors.New("subscribe timed out")
	}
	return t.Error()
}

// Connected reports whether the connection is up.
func (cl *Client) Connected() bool { return cl.c.IsConnectionOpen() }

// Cut drops the connection without a DISCONNECT: the broker publishes the
// will.
func (cl *Client) Cut() {
	cl.mu.Lock()
	if cl.raw != nil {
		_ = cl.raw.Close()
	}
	cl.mu.Unlock()
	cl.c.Disconnect(0) // the connection is gone: no DISCONNECT reaches the broker
}

// Close disconnects cleanly, waiting up to quiesce ms for work in flight:
// the broker does not publish the will.
func (cl *Client) Close(quiesce uint) { cl.c.Disconnect(quiesce) }
