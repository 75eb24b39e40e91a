package mqtt

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
)

// A connection lost is no connection: from the loss on, through the
// backoff before the next connect (up to backoff_max, a minute by default,
// behind a broker that drops the agent again and again), the source is not
// shown connected — as the OPC UA source is down once its session failed,
// and as the agent counts it (OnDisconnect: a machine's running no longer
// counts towards its quiet counter, status must not show the broker
// connected meanwhile).
func TestLostConnectionIsNotShownConnected(t *testing.T) {
	// A port the kernel picks, held by the test until the broker goes (it
	// was a fixed one: taken by anything else on the machine, the test was
	// skipped).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", l)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	var src atomic.Pointer[running]
	stateAt := make(chan connectors.State, 1)
	r := start(t, Config{URL: "tcp://" + addr, ClientID: "lost-state", Topics: []string{"t/1"},
		BackoffMin: time.Minute, BackoffMax: time.Minute,
		OnDisconnect: func() {
			select {
			case stateAt <- src.Load().State():
			default:
			}
		}}, make(chanSink, 10))
	src.Store(r)
	waitConnected(t, r, 1)
	_ = l.Close()
	_ = mqtttest.CloseMochi(srv) // the broker goes: the connection is lost
	select {
	case st := <-stateAt:
		if st == connectors.StateConnected {
			t.Errorf("at the connection's loss the source says %s", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no OnDisconnect 20 s after the broker closed")
	}
}
