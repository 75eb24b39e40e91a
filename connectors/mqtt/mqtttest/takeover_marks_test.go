package mqtttest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// cutHook runs after the takeover hook. A publish of payload "cut" has its
// client's connection closed as it passes: mochi cannot write its PUBACK
// and never calls OnPublished, as for a publish that waited while its own
// session was taken over (the takeover closed the old connection). One of
// payload "slow" waits until release is closed. atEstablish, if set, is
// called at OnSessionEstablish, once the takeover hook's has returned.
type cutHook struct {
	mochi.HookBase
	release     chan struct{}
	atEstablish atomic.Pointer[func()]
}

func (*cutHook) ID() string { return "cut" }

func (*cutHook) Provides(b byte) bool {
	return b == mochi.OnPublish || b == mochi.OnSessionEstablish
}

func (h *cutHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	switch string(pk.Payload) {
	case "cut":
		cl.Stop(errors.New("cut"))
	case "slow":
		<-h.release
	}
	return pk, nil
}

func (h *cutHook) OnSessionEstablish(*mochi.Client, packets.Packet) {
	if fn := h.atEstablish.Load(); fn != nil {
		(*fn)()
	}
}

func startCut(t *testing.T) (*Broker, *cutHook) {
	t.Helper()
	b, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &cutHook{release: make(chan struct{})}
	if err := b.srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	return b, h
}

// A client's publish that mochi never finished (its connection closed
// before the PUBACK: no OnPublished) is no longer under way once the
// client is gone: before, it stayed marked until the next takeover, which
// waited for it up to takeoverGuard while every publish of the broker was
// held.
func TestTakeoverForgetsThePublishesOfAClientGone(t *testing.T) {
	b, _ := startCut(t)
	defer b.Close()
	c, err := Dial(b.URL(), "gateway", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(0)
	_ = c.Publish("t", 1, false, []byte("cut"), 200*time.Millisecond) // never acknowledged
	for deadline := time.Now().Add(5 * time.Second); atomic.LoadInt64(&b.srv.Info.ClientsConnected) > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the gateway's connection was not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.takeover.mu.Lock()
	n := len(b.takeover.pubs)
	b.takeover.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d publishes of a client gone still marked under way", n)
	}
}

// A takeover that waited its whole takeoverGuard for a publish under way
// (the inline client's, blocked past it: an inline subscriber that does
// not return, or SparkplugAware's queue full) still holds the publishes
// while it takes the session over: before, its mark was as old as the
// guard by then, and publishes went ahead in the window where mochi loses
// them.
func TestTakeoverAfterALongWaitStillHoldsPublishes(t *testing.T) {
	b, h := startCut(t)
	defer b.Close()
	defer close(h.release)
	keptSession(t, b).Disconnect(0) // the session to take over
	go func() { _ = b.Publish("t", []byte("slow"), false, 1) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b.takeover.mu.Lock()
		n := b.takeover.inline
		b.takeover.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow publish never came")
		}
	}
	var (
		mu   sync.Mutex
		held *bool
	)
	h.atEstablish.Store(new(func()))
	*h.atEstablish.Load() = func() {
		b.takeover.mu.Lock()
		free := b.takeover.free()
		b.takeover.mu.Unlock()
		mu.Lock()
		held = new(bool)
		*held = !free
		mu.Unlock()
	}
	defer keptSession(t, b).Disconnect(0)
	mu.Lock()
	defer mu.Unlock()
	if held == nil || !*held {
		t.Fatal("publishes went ahead while the takeover took the session over")
	}
}

// keptSession connects client "agent" with clean session off.
func keptSession(t *testing.T, b *Broker) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("agent").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	return c
}
