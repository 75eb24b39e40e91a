package mqtttest

import (
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Publisher publishes QoS 1 messages to a broker that may go away and come
// back (a soak restarts it): each Publish reconnects first if needed, at
// most every 300 ms, and never waits more than a few seconds.
type Publisher struct {
	url, clientID string

	mu      sync.Mutex
	c       paho.Client
	lastTry time.Time
	ok      atomic.Bool
}

// NewPublisher returns a publisher for the broker at url (tcp://host:port).
func NewPublisher(url, clientID string) *Publisher {
	return &Publisher{url: url, clientID: clientID}
}

// Publish sends payload to topic with QoS 1 and reports whether the broker
// acknowledged it.
func (p *Publisher) Publish(topic string, payload []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil || !p.c.IsConnectionOpen() {
		if p.c != nil {
			p.c.Disconnect(0)
			p.c = nil
		}
		if time.Since(p.lastTry) < 300*time.Millisecond {
			p.ok.Store(false)
			return false
		}
		p.lastTry = time.Now()
		o := paho.NewClientOptions().AddBroker(p.url).SetClientID(p.clientID).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(2 * time.Second)
		c := paho.NewClient(o)
		t := c.Connect()
		if !t.WaitTimeout(3*time.Second) || t.Error() != nil {
			c.Disconnect(0)
			p.ok.Store(false)
			return false
		}
		p.c = c
	}
	t := p.c.Publish(topic, 1, false, payload)
	ok := t.WaitTimeout(2*time.Second) && t.Error() == nil
	p.ok.Store(ok)
	return ok
}

// OK reports whether the last Publish was acknowledged.
func (p *Publisher) OK() bool { return p.ok.Load() }

// Close disconnects.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		p.c.Disconnect(0)
		p.c = nil
	}
}
