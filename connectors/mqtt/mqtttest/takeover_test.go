package mqtttest

import (
	"testing"
	"time"
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
		checkTakeovers(t, b.URL(), func(p []byte) error { return b.Publish("t", p, false, 1) })
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
		checkTakeovers(t, b.URL(), func(p []byte) error { return c.Publish("t", 1, false, p, 5*time.Second) })
	})
}

func checkTakeovers(t *testing.T, url string, publish func([]byte) error) {
	t.Helper()
	n, missing, err := Takeovers(url, 300, publish)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d messages published during 300 takeovers never came: %v", len(missing), n, missing[:min(len(missing), 20)])
	}
}
