package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// pendingBuffer is a real buffer holding n good-count records of m1, one
// piece each.
func pendingBuffer(tb testing.TB, n int) *buffer.Queue {
	tb.Helper()
	buf, err := buffer.Open(filepath.Join(tb.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { buf.Close() })
	for n > 0 {
		recs := make([]buffer.Record, min(n, scanChunk))
		for i := range recs {
			recs[i] = buffer.Record{Lane: buffer.LaneCounts, Key: countKey("m1", sigGood), Data: mustJSON(countRecord{Delta: 1})}
		}
		if _, err := buf.Append(context.Background(), recs); err != nil {
			tb.Fatal(err)
		}
		n -= len(recs)
	}
	return buf
}

// BenchmarkPendingScan measures a scan of the pending counts, in µs a
// record: what pendingScanBound is chosen from (at most about 100 ms of
// it on a loaded box, pendingScanSlow).
func BenchmarkPendingScan(b *testing.B) {
	const n = 200000
	a := &Agent{buf: pendingBuffer(b, n)}
	for b.Loop() {
		p, err := a.scanPending(false)
		if err != nil || p["m1"].records != n {
			b.Fatalf("%v records, %v", p["m1"].records, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/record")
}

// TestPendingCountsOfABigBacklogAreReadInTheBackground: a backlog of more
// records than pendingScanBound is not scanned while status or /metrics
// waits (the many-PLCs benchmark: a scrape of 35–42 s). With no earlier
// result the first call says how many records are being read and gives no
// counts; a later one has the exact sums.
func TestPendingCountsOfABigBacklogAreReadInTheBackground(t *testing.T) {
	defer func(b int) { pendingScanBound = b }(pendingScanBound)
	pendingScanBound = 100
	const n = 2*scanChunk + 1
	a := &Agent{buf: pendingBuffer(t, n)}
	defer a.stopPendingScans()
	p, _, reading, err := a.pendingCounts()
	if err != nil || reading != n || len(p) != 0 {
		t.Fatalf("first call: reading %d, counts %v, %v; want %d records being read and no counts", reading, p, err, n)
	}
	pollPending(t, "the background scan's sums", func() (bool, string) {
		p, _, reading, err := a.pendingCounts()
		return reading == 0 && err == nil && p["m1"].good == n && p["m1"].records == n, fmt.Sprintf("reading %d, %+v, %v", reading, p["m1"], err)
	})
	// A stale result of a big backlog: at once, the next scan in the
	// background, however quick the last one was.
	a.pendingMu.Lock()
	a.pendingTook, a.pendingAt = time.Millisecond, time.Now().Add(-time.Minute)
	a.pendingMu.Unlock()
	pendingBufferAdd(t, a.buf, 3)
	if p, _, reading, _ := a.pendingCounts(); reading != 0 || p["m1"].good != n {
		t.Errorf("a stale result: reading %d, good %v, want the last result %d at once", reading, p["m1"].good, n)
	}
	pollPending(t, "the next background scan", func() (bool, string) {
		p, _, _, _ := a.pendingCounts()
		return p["m1"].good == n+3, fmt.Sprint(p["m1"].good)
	})
}

// TestStopCutsABackgroundPendingScanShort: a stop during a background scan
// of a big backlog ends it at its next chunk (it waits for the scan before
// the buffer closes: a scan of millions held it tens of seconds), and the
// part it read is not taken for the buffer's counts.
func TestStopCutsABackgroundPendingScanShort(t *testing.T) {
	defer func(b int) { pendingScanBound = b }(pendingScanBound)
	pendingScanBound = 100
	const n = 3*scanChunk + 1
	a := &Agent{buf: pendingBuffer(t, n)}
	chunks, started := 0, make(chan struct{})
	pendingScanChunk = func(*Agent) {
		chunks++
		if chunks == 1 {
			close(started)
			// Stay in the scan until the stop is asked for.
			for deadline := time.Now().Add(30 * time.Second); !a.pendingDone.Load() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
	}
	defer func() { pendingScanChunk = nil }()
	if _, _, reading, _ := a.pendingCounts(); reading != n {
		t.Fatalf("reading %d, want %d", reading, n)
	}
	<-started
	a.stopPendingScans()
	if chunks != 1 {
		t.Errorf("the scan read %d chunks of %d records after the stop was asked for, want it to end at the first (%d records in all)", chunks, scanChunk, n)
	}
	a.pendingMu.Lock()
	val, busy := a.pendingVal, a.pendingBusy
	a.pendingMu.Unlock()
	if val != nil || busy {
		t.Errorf("after the stop: counts %v (busy %v), want the cut scan's part not kept", val, busy)
	}
	// After the stop a call scans while it waits (no background left).
	if p, _, reading, err := a.pendingCounts(); reading != 0 || err != nil || p["m1"].good != n {
		t.Errorf("after the stop: reading %d, good %v, %v; want a scan of its own, %d", reading, p["m1"].good, err, n)
	}
}

func pendingBufferAdd(tb testing.TB, buf *buffer.Queue, n int) {
	tb.Helper()
	recs := make([]buffer.Record, n)
	for i := range recs {
		recs[i] = buffer.Record{Lane: buffer.LaneCounts, Key: countKey("m1", sigGood), Data: mustJSON(countRecord{Delta: 1})}
	}
	if _, err := buf.Append(context.Background(), recs); err != nil {
		tb.Fatal(err)
	}
}

// pollPending waits for cond, polling (a loaded machine may be slow).
func pollPending(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("%s: not after 30 s (%s)", what, last)
}
