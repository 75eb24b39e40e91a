package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/plantedge/plantedge/connectors"
)

// TopicInfo is what a broker gave for one topic while Inspect listened.
type TopicInfo struct {
	Topic    string
	Refused  string    // the broker refused the subscription (its SUBACK code); "" when it took it
	Got      bool      // a message arrived (a retained one, or a live one)
	Retained bool      // it was a retained one: sent at the subscription, made who knows when
	Received time.Time // when it arrived
	Payload  []byte    // the first message's payload
}

// Inspect connects to the broker with cfg's address, credentials and TLS
// settings — under a client id of its own and a clean session, so the
// agent's persistent session is left alone — subscribes to cfg.Topics
// (QoS 0), and waits up to wait for a first message on each (retained
// messages come at once). It is for checking a configuration.
func Inspect(ctx context.Context, cfg Config, wait time.Duration) ([]TopicInfo, error) {
	out := make([]TopicInfo, len(cfg.Topics))
	at := map[string]int{}
	for i, t := range cfg.Topics {
		out[i].Topic = t
		at[t] = i
	}
	left := len(out)
	_, err := listen(ctx, cfg, wait, func(topic string, payload []byte, retained bool) bool {
		i, ok := at[topic]
		if !ok || out[i].Got || out[i].Refused != "" {
			return false
		}
		out[i].Got, out[i].Payload = true, append([]byte{}, payload...)
		out[i].Retained, out[i].Received = retained, time.Now()
		left--
		return left == 0
	}, func(refused map[string]string) bool {
		for topic, code := range refused {
			if i, ok := at[topic]; ok && !out[i].Got {
				out[i].Refused = code
				left--
			}
		}
		return left == 0
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Listen connects as Inspect does, subscribes to cfg.Topics (QoS 0) and
// calls fn with every message (one at a time) until fn returns true, wait
// passes or ctx ends. It returns the topics whose subscription the broker
// refused, with its SUBACK code. It is for checking a configuration whose
// first message on a topic may not be the one it needs (a Sparkplug B DATA
// carries only the metrics that changed).
func Listen(ctx context.Context, cfg Config, wait time.Duration, fn func(topic string, payload []byte, retained bool) (done bool)) (refused map[string]string, err error) {
	return listen(ctx, cfg, wait, fn, nil)
}

// listen is Listen; subscribed, when set, is told the refused topics once
// the broker answered the subscription, under the lock fn runs under, and
// ends the wait when it returns true.
func listen(ctx context.Context, cfg Config, wait time.Duration, fn func(topic string, payload []byte, retained bool) (done bool),
	subscribed func(refused map[string]string) (done bool)) (refused map[string]string, err error) {
	src, err := New(cfg, connectors.SinkFunc(func(context.Context, connectors.Sample) error { return nil }))
	if err != nil {
		return nil, err
	}
	cfg = src.cfg
	var tlsCfg *tls.Config
	if src.tls {
		if tlsCfg, err = src.tlsConfig(); err != nil {
			return nil, err
		}
	}
	opts := src.clientOptions(cfg.ClientID+"-check", tlsCfg).SetCleanSession(true)
	var mu sync.Mutex
	finished := false
	all := make(chan struct{})
	opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		if fn(m.Topic(), m.Payload(), m.Retained()) {
			finished = true
			close(all)
		}
	})
	c := paho.NewClient(opts)
	if err := waitToken(ctx, c.Connect(), cfg.ConnectTimeout); err != nil {
		return nil, tlsMismatch(cfg.URL, fmt.Errorf("connect %s: %w", redactURL(cfg.URL), err))
	}
	defer c.Disconnect(100)
	filters := map[string]byte{}
	for _, t := range cfg.Topics {
		filters[t] = 0
	}
	tok := c.SubscribeMultiple(filters, nil)
	if err := waitToken(ctx, tok, cfg.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	refused = map[string]string{}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code >= 0x80 {
				refused[topic] = fmt.Sprintf("0x%02x", code)
			}
		}
	}
	if subscribed != nil {
		mu.Lock()
		if !finished && subscribed(refused) {
			finished = true
			close(all)
		}
		mu.Unlock()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-all:
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	finished = true
	mu.Unlock()
	return refused, nil
}

// LoginRefused reports whether err is the broker refusing the connection's
// login: CONNACK "bad user name or password" (4) or "not authorized" (5) —
// a wrong user name or password, an account removed, or no login where
// the broker wants one (MQTT 5's 0x86 and 0x87: a broker answers this
// MQTT 3.1.1 client with 4 or 5; mochi-mqtt with 5 for a wrong password).
func LoginRefused(err error) bool {
	return errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised)
}
