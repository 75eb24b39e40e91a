package mqtt

import (
	"fmt"
	"github.com/plantedge/plantedge/connectors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A filter an earlier configuration's source unsubscribed
// (Config.Unsubscribe) and a later configuration wants back: mochi answers
// its re-subscribe 0x91 while the resumed session resends QoS 1 messages
// (a plant publishing while the source was being replaced). Taken for "the
// session still holds it" (the review), the topic went silently dead: no
// message, no error, nothing refused. Asked again once the resent messages
// are acknowledged, it is read from the connect on.
func TestResubscribeAfterAnUnsubscribe(t *testing.T) {
	const id = "unsub-dead"
	url, sink := sessionOf(t, id, "keep/#", "back/#")
	// A reload drops back/#: the new source unsubscribes it (nothing is
	// in flight, so mochi does).
	r := start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#"}, Unsubscribe: []string{"back/#"}}, sink)
	waitConnected(t, r, 1)
	r.stop(t)
	p := backlog(t, url)
	// A reload puts back/# back; its sink commits at once, as the agent's
	// does, so the resent messages are acknowledged.
	got := committing(t, sink)
	var logs logBuffer
	r = start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#", "back/#"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	waitConnected(t, r, 1)
	// Published until one comes: the filter is asked again once the resent
	// messages are acknowledged, which on a busy machine can be after a
	// first message (one published before the subscribe is not the
	// session's to keep). A topic gone dead never gets one.
	p.pub(t, "back/a", []byte("wanted"))
	again := time.NewTicker(250 * time.Millisecond)
	defer again.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-got:
			if m.Address == "back/a" {
				return
			}
		case <-again.C:
			p.pub(t, "back/a", []byte("wanted"))
		case <-deadline:
			t.Fatalf("back/a, mapped again, never came; state %v, refused %v; log:\n%s",
				r.State(), r.Stats().Refused, logs.String())
		}
	}
}

// The unsubscribe of an earlier configuration's filters at a resumed
// session's connect, while mochi resends messages (which can make it
// answer 0x91; MQTT 3.1.1's UNSUBACK carries no code, so it would pass
// unseen — the review): it is made once they are acknowledged, and the
// filter's messages no longer come.
func TestUnsubscribeWhileTheSessionResends(t *testing.T) {
	const id = "unsub-0x91"
	url, sink := sessionOf(t, id, "keep/#", "old/#")
	p := backlog(t, url)
	got := committing(t, sink)
	var logs logBuffer
	r := start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#"}, Unsubscribe: []string{"old/#"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	waitConnected(t, r, 1)
	p.pub(t, "old/a", []byte("stray"))
	p.pub(t, "keep/x", []byte("last"))
	for {
		var s connectors.Sample
		select {
		case s = <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("the last message did not come")
		}
		if s.Address == "old/a" {
			t.Fatalf("old/a came after the connect unsubscribed old/# (logged: %v):\n%s",
				strings.Contains(logs.String(), "unsubscribed the broker's session from filters"), logs.String())
		}
		if string(s.Payload) == "last" {
			return
		}
	}
}

// committing takes every sample from sink and acknowledges it at once, as
// the agent's sink does once committed, and passes it on.
func committing(t *testing.T, sink chanSink) <-chan connectors.Sample {
	got, done := make(chan connectors.Sample, 100), make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sink:
				s.Done()
				select {
				case got <- s:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return got
}

// sessionOf gives client id a session on a mochi broker, subscribed to
// topics, and leaves it (the source stopped).
func sessionOf(t *testing.T, id string, topics ...string) (url string, sink chanSink) {
	url, sink = startMochi(t, "tcp", nil, nil), make(chanSink, 100)
	r := start(t, Config{URL: url, ClientID: id, Topics: topics}, sink)
	waitConnected(t, r, 1)
	r.stop(t)
	return url, sink
}

// backlog publishes ten messages on keep/x (QoS 1), which the session
// queues while its source is away: the machines go on publishing while the
// next source connects.
func backlog(t *testing.T, url string) *publisher {
	p := newPublisher(t, url, nil)
	for i := range 10 {
		p.pub(t, "keep/x", fmt.Appendf(nil, "k%d", i))
	}
	return p
}

// Config.Unsubscribed is told the filters once they are gone from the
// session: unsubscribed in a resumed one, or never there in a new one (the
// agent keeps them in its buffer file until then, for the next run).
func TestUnsubscribedTold(t *testing.T) {
	for _, resumed := range []bool{true, false} {
		t.Run(fmt.Sprint("resumed=", resumed), func(t *testing.T) {
			id := fmt.Sprint("unsub-told-", resumed)
			var url string
			if resumed {
				url, _ = sessionOf(t, id, "keep/#", "old/#")
			} else {
				url = startMochi(t, "tcp", nil, nil)
			}
			told := make(chan []string, 1)
			r := start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#"}, Unsubscribe: []string{"old/#"},
				Unsubscribed: func(fs []string) { told <- fs }}, make(chanSink, 100))
			waitConnected(t, r, 1)
			select {
			case fs := <-told:
				if fmt.Sprint(fs) != "[old/#]" {
					t.Errorf("told %v, want [old/#]", fs)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Unsubscribed not called")
			}
		})
	}
}
