package mqtt

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/plantedge/plantedge/internal/nettest"
)

// The bound on the stray topics unsubscribed one by one is a connection's:
// a new connection (the broker lost and back) starts it again, so a stray
// topic of its own (left/over, another client's exact subscription) is
// unsubscribed there, and the note past the bound is said once per
// connection.
func TestStrayBoundIsPerConnection(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	earlier := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("pe-stray").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := earlier.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := earlier.SubscribeMultiple(map[string]byte{"old/#": 1, "left/over": 1}, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	earlier.Disconnect(100)

	px := nettest.NewCrashProxy(t, strings.TrimPrefix(url, "tcp://"))
	var logs logBuffer
	n := strayUnsubscribesKept + 50
	sink := make(chanSink, 4*n)
	r := start(t, Config{URL: "tcp://" + px.Addr(), ClientID: "pe-stray", Topics: []string{"t/1"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, url, nil)
	burst := func(from int) {
		for i := range n {
			// QoS 0: nothing of it is redelivered in the next connection
			// (redeliveries would fill its bound before left/over came).
			p.c.Publish(fmt.Sprintf("old/serial-%d", from+i), 0, false, []byte("1")).Wait()
		}
		for range n {
			s := sink.next(t)
			s.Done() // as the agent does once the stray is counted
		}
	}
	const note = "topics no machine uses came in this connection"
	burst(0)
	waitFor(t, "the note in the first connection", func() bool { return strings.Count(logs.String(), note) == 1 })
	waitFor(t, "the first connection's acks", func() bool { return r.Stats().Acked >= uint64(n) })
	px.Crash()
	px.Restart()
	waitConnected(t, r, 2)
	p.pub(t, "left/over", []byte("1"))
	// (Redeliveries of the first connection's messages may come first.)
	for i := 0; ; i++ {
		s := sink.next(t)
		s.Done()
		if s.Address == "left/over" {
			break
		} else if i > 2*n {
			t.Fatalf("no left/over, got %s", s.Address)
		}
	}
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if !strings.Contains(l, "old/serial") || strings.Contains(l, "WARN") {
					t.Log(l)
				}
			}
		}
	}()
	waitFor(t, "left/over unsubscribed in the second connection", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "mqtt unsubscribed from a topic no machine uses") && strings.HasSuffix(l, "topic=left/over") {
				return true
			}
		}
		return false
	})
	burst(n)
	waitFor(t, "the note in the second connection", func() bool { return strings.Count(logs.String(), note) == 2 })
	ss := r.cur.Load()
	ss.mu.Lock()
	kept := len(ss.strays)
	ss.mu.Unlock()
	if kept > strayUnsubscribesKept {
		t.Errorf("the second connection keeps %d stray topics, want at most %d", kept, strayUnsubscribesKept)
	}
	t.Logf("unsubscribed one by one over two connections: %d", strings.Count(logs.String(), "mqtt unsubscribed from a topic no machine uses"))
}

// A reload that removes a machine starts a new connection whose
// Config.Unsubscribe names its topic: that unsubscribe does not go through
// the stray bound, so a session whose earlier connection was past it (a
// foreign "old/#") still has the removed topic taken off.
func TestRemovedTopicUnsubscribedPastTheStrayBound(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	foreignWildcardSession(t, url)
	var logs logBuffer
	n := strayUnsubscribesKept + 50
	sink := make(chanSink, 4*n)
	cfg := Config{URL: url, ClientID: "pe-stray", Topics: []string{"t/1", "t/2"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	r := start(t, cfg, sink)
	waitConnected(t, r, 1)
	p := newPublisher(t, url, nil)
	for i := range n {
		p.c.Publish(fmt.Sprintf("old/serial-%d", i), 0, false, []byte("1")).Wait()
	}
	for range n {
		sink.next(t).Done()
	}
	waitFor(t, "the note past the bound", func() bool { return strings.Contains(logs.String(), "topics no machine uses came in this connection") })
	waitFor(t, "the acks", func() bool { return r.Stats().Acked >= uint64(n) })
	r.stop(t)
	// The reload: t/2's machine removed.
	cfg.Topics, cfg.Unsubscribe = []string{"t/1"}, []string{"t/2"}
	r = start(t, cfg, sink)
	waitConnected(t, r, 1)
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	p.pub(t, "t/2", []byte("gone"))
	p.pub(t, "t/1", []byte("marker"))
	for {
		s := sink.next(t)
		s.Done()
		if s.Address == "t/2" {
			t.Fatalf("a message on t/2 after the reload removed it: %q", s.Payload)
		}
		if s.Address == "t/1" {
			break
		}
	}
}

// foreignWildcardSession leaves in the broker at url a session of client
// id pe-stray that another client subscribed to "old/#" (clean session
// off), as a client sharing the agent's client_id would.
func foreignWildcardSession(t *testing.T, url string) {
	t.Helper()
	earlier := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("pe-stray").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := earlier.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := earlier.SubscribeMultiple(map[string]byte{"old/#": 1}, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	earlier.Disconnect(100)
}
