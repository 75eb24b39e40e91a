package mqtt

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Review (review-unsub), finding 1: a filter an earlier configuration's
// source unsubscribed (Config.Unsubscribe) and a later configuration wants
// back goes silently dead when mochi answers its re-subscribe 0x91 twice —
// which it does whenever the resumed session resends more QoS 1 messages
// than the two packet ids the SUBSCRIBEs take (a plant publishing while the
// source was being replaced). The second 0x91 is taken for "the session
// still holds it", but the earlier source removed it: no message, no error,
// nothing refused in Stats.
func TestReviewUnsubResubscribeAfterUnsubscribeGoesDead(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	sink := make(chanSink, 100)
	const id = "review-unsub-dead"
	r := start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#", "back/#"}}, sink)
	waitConnected(t, r, 1)
	r.stop(t)
	// A reload drops back/#: the new source unsubscribes it (nothing is
	// in flight, so mochi does).
	r = start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#"}, Unsubscribe: []string{"back/#"}}, sink)
	waitConnected(t, r, 1)
	r.stop(t)
	// The machines go on publishing while the next source connects.
	p := newPublisher(t, url, nil)
	for i := range 10 {
		p.pub(t, "keep/x", fmt.Appendf(nil, "k%d", i))
	}
	// A reload puts back/# back.
	var logs logBuffer
	r = start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#", "back/#"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	waitConnected(t, r, 1)
	p.pub(t, "back/a", []byte("wanted"))
	deadline := time.After(3 * time.Second)
	for {
		select {
		case s := <-sink:
			s.Done()
			if s.Address == "back/a" {
				return
			}
		case <-deadline:
			t.Fatalf("back/a, mapped again, never came; state %v, refused %v; log:\n%s",
				r.State(), r.Stats().Refused, logs.String())
		}
	}
}

// Review (review-unsub), finding 2: the unsubscribe of an earlier
// configuration's filters at a resumed session's connect is answered 0x91
// by mochi under the same condition (resent messages holding its packet
// id); MQTT 3.1.1's UNSUBACK carries no code, so the connector logs
// "unsubscribed" while the filter stays, and its messages come as strays
// for good — the bug the commit set out to fix.
func TestReviewUnsubUnsubscribeAnswered0x91(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	sink := make(chanSink, 100)
	const id = "review-unsub-0x91"
	r := start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#", "old/#"}}, sink)
	waitConnected(t, r, 1)
	r.stop(t)
	p := newPublisher(t, url, nil)
	for i := range 10 {
		p.pub(t, "keep/x", fmt.Appendf(nil, "k%d", i))
	}
	var logs logBuffer
	r = start(t, Config{URL: url, ClientID: id, Topics: []string{"keep/#"}, Unsubscribe: []string{"old/#"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	waitConnected(t, r, 1)
	for range 10 {
		sink.next(t).Done()
	}
	p.pub(t, "old/a", []byte("stray"))
	p.pub(t, "keep/x", []byte("last"))
	for {
		s := sink.next(t)
		s.Done()
		if s.Address == "old/a" {
			t.Fatalf("old/a came after the connect unsubscribed old/# (logged: %v):\n%s",
				strings.Contains(logs.String(), "unsubscribed the broker's session from filters"), logs.String())
		}
		if string(s.Payload) == "last" {
			return
		}
	}
}
