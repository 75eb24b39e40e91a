package opcua

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// gateSink holds the delivery of the next sample after hold is called
// until the gate it returns is closed, as the agent's queue does when it
// is full behind a stalled disk: the session's loop stands still in it.
type gateSink struct {
	*collector
	mu   sync.Mutex
	gate chan struct{} // the next delivery waits for it
	held chan struct{} // closed as it waits
}

func (g *gateSink) hold() (held <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.held = make(chan struct{}), make(chan struct{})
	gate := g.gate
	return g.held, func() { close(gate) }
}

func (g *gateSink) Deliver(ctx context.Context, s connectors.Sample) error {
	g.mu.Lock()
	gate, held := g.gate, g.held
	g.gate = nil
	g.mu.Unlock()
	if gate != nil {
		close(held)
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	return g.collector.Deliver(ctx, s)
}

// A session's loop that stood still longer than heartbeat_timeout (a
// delivery held up: the agent's queue full behind a stalled disk) while
// the server went on sending is not a silent server: what came meanwhile
// waits in the channel, and the loop's next check must not end the
// session before taking it. It did, at random (the loop's select took the
// late check or a waiting notification first): a loop held 1.2 s with a
// 1 s heartbeat_timeout ended the healthy session 9 times in 20; the
// session then lost the notifications waiting (a counter's next read
// brought its count, a run state's stops among them were gone) and made
// a new one. Each round here holds the loop longer than the timeout; the
// one session stays, and the counter comes whole and in order.
func TestStalledLoopIsNotASilentServer(t *testing.T) {
	ts := startInProcess(t, 0)
	sink := &gateSink{collector: newCollector()}
	src := runSource(t, Config{
		Endpoint: ts.url, Nodes: []string{"ns=1;s=Counter"},
		PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}, sink)
	_, i := sink.waitFor(t, 0, 10*time.Second, "the first read", func(s connectors.Sample) bool { return s.Initial })
	const rounds = 8
	for round := range rounds {
		held, release := sink.hold()
		ts.Bump(1) // its sample is held
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("no sample to hold")
		}
		// The server goes on, the loop stands still: longer than the
		// heartbeat timeout (its server clock notified every 100 ms).
		for range 5 {
			time.Sleep(100 * time.Millisecond)
			ts.Bump(1)
		}
		time.Sleep(2 * time.Second)
		release()
		want := ts.counter.Load()
		_, i = sink.waitFor(t, i, 10*time.Second, "the counter's last value", func(s connectors.Sample) bool { return s.Value == want })
		if st := src.Stats(); st.HeartbeatRebuilds != 0 || st.SessionsCreated != 1 {
			t.Fatalf("round %d of %d: the loop held longer than heartbeat_timeout ended a healthy session: stats %+v", round+1, rounds, st)
		}
	}
	var last connectors.Sample
	for n, s := range sink.all() {
		if n > 0 && (s.Watch != last.Watch || s.Value.(int64) < last.Value.(int64)) {
			t.Errorf("sample %d: %v (watch %x) after %v (watch %x): want one session's, never down", n, s.Value, s.Watch, last.Value, last.Watch)
		}
		last = s
	}
}

// beatWatch counts silence while the loop listens: synthetic times.
func TestBeatWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const ms = time.Millisecond

	// Checks on time: the time since the last beat.
	b := newBeatWatch(t0, 2*time.Second)
	for d := 200 * ms; d <= 3*time.Second; d += 200 * ms {
		if got := b.silence(at(d)); got != d {
			t.Fatalf("check at %v on time: silence %v, want %v", d, got, d)
		}
	}
	b.heard(at(3100 * ms))
	if got := b.silence(at(3200 * ms)); got != 100*ms {
		t.Errorf("after a beat: silence %v, want 100ms", got)
	}

	// The loop stood still 10 s right after a beat: half a second of it
	// counts (a quarter of the 2 s timeout); then, the server silent,
	// each check on time counts whole, and the timeout is passed after
	// 1.5 s more of listening.
	b = newBeatWatch(t0, 2*time.Second)
	b.heard(at(100 * ms))
	if got := b.silence(at(10100 * ms)); got != 500*ms {
		t.Errorf("a check 10 s late: silence %v, want 500ms", got)
	}
	b = newBeatWatch(t0, 2*time.Second)
	b.heard(at(100 * ms))
	b.silence(at(10100 * ms))
	silence := time.Duration(0)
	d := 10100 * ms
	for silence <= 2*time.Second {
		d += 200 * ms
		silence = b.silence(at(d))
	}
	if d != 11700*ms {
		t.Errorf("a silent server after a stall: timeout passed at %v, want at 11.7s (1.6 s of listening)", d)
	}

	// Silent 1.8 s before the loop stood still: the stall's quarter
	// passes the timeout at once.
	b = newBeatWatch(t0, 2*time.Second)
	for d := 200 * ms; d <= 1800*ms; d += 200 * ms {
		b.silence(at(d))
	}
	if got := b.silence(at(20 * time.Second)); got != 2300*ms {
		t.Errorf("silent 1.8 s, then a check 18.2 s late: silence %v, want 2.3s", got)
	}

	// Checks late by a second each (a CPU-starved process), timeout 30 s:
	// each gap under a quarter of it counts whole.
	b = newBeatWatch(t0, 30*time.Second)
	if got := b.silence(at(31 * time.Second)); got != 7500*ms {
		t.Errorf("first check at 31 s: silence %v, want 7.5s", got)
	}
	b = newBeatWatch(t0, 30*time.Second)
	for d := time.Second; d <= 31*time.Second; d += time.Second {
		if got := b.silence(at(d)); got != d {
			t.Fatalf("checks a second apart: silence %v at %v", got, d)
		}
	}

	// A beat received (stamped) before the late check: the gap counts
	// from it.
	b = newBeatWatch(t0, 2*time.Second)
	b.heard(at(9900 * ms))
	if got := b.silence(at(10 * time.Second)); got != 100*ms {
		t.Errorf("a beat 100 ms before a late check: silence %v", got)
	}
}
