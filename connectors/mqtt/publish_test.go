package mqtt

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/plantedge/plantedge/connectors"
)

// observer subscribes (QoS 1) as username user and collects what arrives.
func observer(t *testing.T, url, user, filter string) chan paho.Message {
	t.Helper()
	got := make(chan paho.Message, 10)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("obs-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	if user != "" {
		opts.SetUsername(user)
	}
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
	return got
}

// Publish sends with QoS 0, not retained (a Sparkplug NCMD's MQTT
// envelope), on the source's connection; with no connection it says so.
func TestPublishQoS0NotRetained(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	sink := make(chanSink, 10)
	r := start(t, Config{URL: url, ClientID: "pub-src", Topics: []string{"t/#"}}, sink)
	waitConnected(t, r, 1)
	got := observer(t, url, "", "spBv1.0/g/NCMD/n")
	if err := r.Publish("spBv1.0/g/NCMD/n", []byte("rebirth")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case m := <-got:
		if string(m.Payload()) != "rebirth" || m.Qos() != 0 || m.Retained() {
			t.Fatalf("got %q qos %d retained %v, want rebirth, QoS 0, not retained", m.Payload(), m.Qos(), m.Retained())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the publish did not arrive")
	}
	r.stop(t)
	if err := r.Publish("spBv1.0/g/NCMD/n", []byte("x")); err != ErrNotConnected {
		t.Fatalf("publish after stop: %v, want ErrNotConnected", err)
	}
}

// A broker ACL that refuses the agent's publish (real Mosquitto, MQTT
// 3.1.1): the QoS 0 publish is dropped with no answer, and the session
// reads on — no disconnect, no reconnect, messages still come.
func TestMosquittoPublishRefusedKeepsReading(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	// Patterns before any user line are the anonymous clients' (the
	// source): read only. The edge node ("edge") may write.
	if err := os.WriteFile(acl, []byte("topic read #\n\nuser edge\ntopic readwrite #\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newMosquitto(t, "acl_file "+acl, "log_type debug") // debug: each refused publish said
	url := m.url("tcp")
	sink := make(chanSink, 10)
	r := start(t, Config{URL: url, ClientID: "refused-pub", Topics: []string{"spBv1.0/g/+/n/#"}}, sink)
	waitConnected(t, r, 1)
	ncmd := observer(t, url, "edge", "spBv1.0/g/NCMD/n")
	for range 3 {
		if err := r.Publish("spBv1.0/g/NCMD/n", []byte("rebirth")); err != nil {
			t.Fatalf("refused publish reported %v: MQTT 3.1.1 has no answer to a QoS 0 publish", err)
		}
	}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("edge-pub").SetUsername("edge").
		SetCleanSession(true).SetAutoReconnect(false).SetProtocolVersion(4)
	pub := paho.NewClient(opts)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("edge connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	if tok := pub.Publish("spBv1.0/g/NDATA/n", 1, false, []byte("data")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("edge publish: %v", tok.Error())
	}
	s := sink.next(t)
	if s.Address != "spBv1.0/g/NDATA/n" || string(s.Payload) != "data" {
		t.Fatalf("got %s %q", s.Address, s.Payload)
	}
	s.Done()
	// Mosquitto has read all three once it has said each refused (one let
	// through is not said refused: the wait fails). It was a 200 ms wait
	// for the observer, which a loaded machine may take before the broker
	// reads them.
	waitFor(t, "the three publishes refused", func() bool {
		b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
		return strings.Count(string(b), "Denied PUBLISH from refused-pub ") == 3
	})
	select {
	case msg := <-ncmd:
		t.Fatalf("the ACL let the refused publish through: %q", msg.Payload())
	default:
	}
	if st := r.Stats(); st.Reconnects != 0 || st.Connects != 1 || r.State() != connectors.StateConnected {
		t.Fatalf("stats %+v state %s after a refused publish, want one connection, still up", st, r.State())
	}
}
