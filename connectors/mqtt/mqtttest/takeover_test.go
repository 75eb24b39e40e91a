package mqtttest

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A QoS 1 message the broker's inline client publishes while another
// connection takes over a kept session (a reload's new source, the same
// client id, clean session off) reaches the session: mochi routed one
// published between copying the old client's inflight messages and
// adding the new client to the old client, where it was lost (a
// fresh-clone CI: TestCounterTopicTypoFixedBeforeAValueCountsOn, the
// counter published as the reload's source connected never came). So does
// one a client publishes (a gateway, an edge node).
func TestPublishDuringTakeoverIsKept(t *testing.T) {
	t.Run("inline", func(t *testing.T) {
		b, err := Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		publishDuringTakeovers(t, b, func(p []byte) error { return b.Publish("t", p, false, 1) })
	})
	t.Run("client", func(t *testing.T) {
		b, err := Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		c, err := Dial(b.URL(), "gateway", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(0)
		publishDuringTakeovers(t, b, func(p []byte) error { return c.Publish("t", 1, false, p, 5*time.Second) })
	})
}

// publishDuringTakeovers publishes numbered QoS 1 messages with publish
// while 300 connections one after the other take over a kept session
// subscribed to them, and fails unless every one came.
func publishDuringTakeovers(t *testing.T, b *Broker, publish func([]byte) error) {
	var mu sync.Mutex
	got := map[int]bool{}
	handler := func(_ paho.Client, m paho.Message) {
		n, _ := strconv.Atoi(string(m.Payload()))
		mu.Lock()
		got[n] = true
		mu.Unlock()
	}
	dial := func() paho.Client {
		o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("agent").SetCleanSession(false).
			SetProtocolVersion(4).SetAutoReconnect(false).SetDefaultPublishHandler(handler)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		return c
	}
	c := dial()
	if tok := c.Subscribe("t", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	var published atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := publish([]byte(strconv.Itoa(n))); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Store(int64(n))
			time.Sleep(20 * time.Microsecond)
		}
	}()
	for range 300 {
		c.Disconnect(0)
		c = dial()
	}
	close(stop)
	<-done
	defer c.Disconnect(0)
	n := int(published.Load())
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		var missing []int
		for i := 1; i <= n; i++ {
			if !got[i] {
				missing = append(missing, i)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages published during 300 takeovers never came: %v", len(missing), n, missing[:min(len(missing), 20)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
