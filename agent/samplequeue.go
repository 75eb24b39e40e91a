package agent

import (
	"context"
	"sync"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// sampleQueue is the samples the sources handed over (Deliver) and the
// ingest loop has not taken yet, in the order given, up to max of them: a
// put beyond waits for the loop to take some (backpressure to the source).
// It was a channel of 8,192 samples, 2.2 MB held for good (a sample is 272
// bytes), where 1,000 tags changing 10 times a second queue a few hundred
// between two commits; here the memory follows what is queued, and is
// given back some seconds after a burst (the initial reads of every node
// at a start).
type sampleQueue struct {
	max int

	mu     sync.Mutex
	items  []connectors.Sample // oldest first
	room   chan struct{}       // closed when a take made room; then replaced
	shrink shrinker
	ready  chan struct{} // holds a token while samples are queued
}

func newSampleQueue(max int) *sampleQueue {
	return &sampleQueue{max: max, room: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// put queues s, waiting while the queue is full until the loop takes some,
// ctx ends or stop is closed.
func (q *sampleQueue) put(ctx context.Context, stop <-chan struct{}, s connectors.Sample) error {
	for {
		q.mu.Lock()
		if n := len(q.items); n < q.max {
			q.items = append(q.items, s)
			q.mu.Unlock()
			// Into a queue that held samples, the token is there or the
			// loop is taking (and leaves one if it leaves samples).
			if n == 0 {
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			return nil
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errIngestStopping
		}
	}
}

// take appends up to n queued samples to batch, oldest first.
func (q *sampleQueue) take(batch []connectors.Sample, n int) []connectors.Sample {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return batch
	}
	shrink := q.shrink.note(len(q.items), cap(q.items), time.Now())
	var rest int
	if len(batch) == 0 && len(q.items) <= n {
		// All of it: the queue's array becomes the batch and the
		// batch's the queue's, nothing copied.
		full := batch[:cap(batch)]
		clear(full) // no references kept (payloads, acks)
		batch, q.items = q.items, full[:0]
	} else {
		k := min(n, len(q.items))
		batch = append(batch, q.items[:k]...)
		rest = copy(q.items, q.items[k:])
		clear(q.items[rest:])
		q.items = q.items[:rest]
	}
	switch {
	case rest > 0:
		select {
		case q.ready <- struct{}{}: // more for the next take
		default:
		}
	case shrink:
		q.items = nil // the burst that grew it is over
	}
	close(q.room)
	q.room = make(chan struct{})
	return batch
}

// shrinker tells when an array grown by a burst may go: its capacity is
// over shrinkQueueAbove samples and it held at most a quarter of that
// through shrinkAfter. Letting it go at every emptying instead made a
// steady load of bursts (1,000 tags published every 10 ms) grow it anew
// each time.
type shrinker struct {
	peak  int
	since time.Time
}

const (
	shrinkQueueAbove = 1024
	shrinkAfter      = 10 * time.Second
)

// note records that n of an array of capacity c are in use at now, and
// says whether to let the array go.
func (s *shrinker) note(n, c int, now time.Time) bool {
	s.peak = max(s.peak, n)
	if s.since.IsZero() {
		s.since = now
	}
	if now.Sub(s.since) < shrinkAfter {
		return false
	}
	shrink := c > shrinkQueueAbove && s.peak <= c/4
	s.peak, s.since = 0, now
	return shrink
}
