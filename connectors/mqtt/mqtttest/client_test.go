package mqtttest

import (
	"testing"
	"time"
)

// A harness's client publishes and subscribes through the broker, a clean
// Close sends no will, and Cut makes the broker send it (a device losing
// power: the soak's Sparkplug edge node and its NDEATH).
func TestClientWillOnCutOnly(t *testing.T) {
	b, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan string, 10)
	watcher, err := Dial(b.URL(), "watcher", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(0)
	if err := watcher.Subscribe("t/#", 1, func(topic string, payload []byte) { got <- topic + " " + string(payload) }); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no message")
			return ""
		}
	}
	for _, cut := range []bool{false, true} {
		c, err := Dial(b.URL(), "device", &Will{Topic: "t/will", Payload: []byte("gone"), QoS: 1}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish("t/data", 1, false, []byte("1"), 5*time.Second); err != nil || !c.Connected() {
			t.Fatalf("publish: %v, connected %v", err, c.Connected())
		}
		if m := next(); m != "t/data 1" {
			t.Fatalf("got %q", m)
		}
		if !cut {
			c.Close(100)
			continue
		}
		c.Cut()
		if m := next(); m != "t/will gone" {
			t.Fatalf("after Cut: %q, want the will (and none after the clean Close)", m)
		}
	}
}
