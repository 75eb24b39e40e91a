package agent

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// The sample queue keeps the order given, holds a put beyond its size until
// a take makes room (or ctx ends, or the agent stops), and lets a burst's
// array go once it is taken.
func TestSampleQueue(t *testing.T) {
	q := newSampleQueue(3)
	ctx := context.Background()
	stop := make(chan struct{})
	put := func(i int) error { return q.put(ctx, stop, connectors.Sample{Address: strconv.Itoa(i)}) }
	for i := range 3 {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	fourth := make(chan error, 1)
	go func() { fourth <- put(3) }()
	select {
	case err := <-fourth:
		t.Fatalf("a put into the full queue returned (%v), want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-q.ready
	got := q.take(nil, 2)
	if err := <-fourth; err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready token with samples left queued")
	}
	got = q.take(got, 10)
	var order string
	for _, s := range got {
		order += s.Address
	}
	if order != "0123" {
		t.Errorf("taken in the order %q, want 0123", order)
	}
	if got := q.take(nil, 10); len(got) != 0 {
		t.Errorf("an empty queue gave %d samples", len(got))
	}

	// The puts waiting on a full queue end with ctx or with the stop.
	for i := range 3 {
		_ = put(i)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.put(cctx, stop, connectors.Sample{}); !errors.Is(err, context.Canceled) {
		t.Errorf("a put with its ctx ended: %v", err)
	}
	close(stop)
	if err := put(9); !errors.Is(err, errIngestStopping) {
		t.Errorf("a put once stopping: %v", err)
	}

	// A burst beyond shrinkQueueAbove grows the array; it stays while
	// bursts come, and goes once shrinkAfter passed without one.
	// The batch goes back to take, as the ingest loop's does (a take of
	// all swaps the two arrays).
	big := newSampleQueue(2 * shrinkQueueAbove)
	var batch []connectors.Sample
	burst := func() {
		t.Helper()
		for range 2 * shrinkQueueAbove {
			_ = big.put(ctx, nil, connectors.Sample{})
		}
		if batch = big.take(batch[:0], 2*shrinkQueueAbove); len(batch) != 2*shrinkQueueAbove {
			t.Fatalf("took %d", len(batch))
		}
	}
	burst()
	burst()
	if cap(big.items) < 2*shrinkQueueAbove {
		t.Errorf("the queue let its array go between two bursts (capacity %d)", cap(big.items))
	}
	big.shrink.since = time.Now().Add(-shrinkAfter) // the window of those bursts is over
	_ = big.put(ctx, nil, connectors.Sample{})
	batch = big.take(batch[:0], 1)
	if cap(big.items) < 2*shrinkQueueAbove {
		t.Errorf("the queue let its array go with a burst in the last %s (capacity %d)", shrinkAfter, cap(big.items))
	}
	big.shrink.since = time.Now().Add(-shrinkAfter) // a window with one sample at most
	_ = big.put(ctx, nil, connectors.Sample{})
	batch = big.take(batch[:0], 1)
	if cap(big.items) != 0 {
		t.Errorf("the queue keeps an array of %d samples after %s of one sample", cap(big.items), shrinkAfter)
	}
}
