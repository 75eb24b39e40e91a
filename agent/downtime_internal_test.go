package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// fairOrder hands records out a key at a time in turn, each key's oldest
// first, each turn in sequence order; every record once, and each key's
// records in their order.
func TestFairOrder(t *testing.T) {
	var recs []buffer.Record
	add := func(key string, n int) {
		for range n {
			recs = append(recs, buffer.Record{Seq: uint64(len(recs) + 1), Key: key})
		}
	}
	add("a", 5)
	add("b", 1)
	add("a", 2)
	add("c", 2)
	add("b", 1)
	var got []string
	for _, r := range fairOrder(recs) {
		got = append(got, fmt.Sprintf("%s%d", r.Key, r.Seq))
	}
	if want := []string{"a1", "b6", "c9", "a2", "c10", "b11", "a3", "a4", "a5", "a7", "a8"}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	if got := fairOrder(nil); len(got) != 0 {
		t.Errorf("nothing: %v", got)
	}
	// Many keys, random lengths: a permutation that keeps each key's order.
	recs = recs[:0]
	for i := range 5000 {
		recs = append(recs, buffer.Record{Seq: uint64(i + 1), Key: fmt.Sprint(rand.IntN(300))})
	}
	out := fairOrder(recs)
	if len(out) != len(recs) {
		t.Fatalf("%d records out of %d", len(out), len(recs))
	}
	last, seen := map[string]uint64{}, map[uint64]bool{}
	for _, r := range out {
		if r.Seq <= last[r.Key] || seen[r.Seq] {
			t.Fatalf("%s seq %d after %d (or twice)", r.Key, r.Seq, last[r.Key])
		}
		last[r.Key], seen[r.Seq] = r.Seq, true
	}
}

// BenchmarkEventWindow measures what a round spends looking at its window
// of downtime records in a long events lane (50,000 records of 20
// machines): peek, fair order, decode of the 200 that go, claim.
//
//	go test -run '^$' -bench EventWindow -benchtime 100x ./agent/
func BenchmarkEventWindow(b *testing.B) {
	for _, perAppend := range []int{1000, 1} { // segments, or a key per record
		q, err := buffer.Open(filepath.Join(b.TempDir(), "b.db"), buffer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { q.Close() })
		for i := 0; i < 50000; i += perAppend {
			var recs []buffer.Record
			for j := i; j < i+perAppend; j++ {
				ms := time.Now().Add(-time.Hour).UnixMilli() + int64(j)*10
				ev := eventRecord{Start: ms, End: ms + 5, Reason: "JAM", Loss: "Equipment Failure", Site: "test-plant", Workcenter: "WC-PRESS"}
				recs = append(recs, buffer.Record{Lane: buffer.LaneEvents, Key: fmt.Sprintf("press-%d", j%20), Data: mustJSON(ev)})
			}
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		for _, window := range []int{800, eventScanWindow} {
			b.Run(fmt.Sprintf("records_per_append=%d/window=%d", perAppend, window), func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					recs, err := q.Peek(buffer.LaneEvents, 0, window)
					if err != nil {
						b.Fatal(err)
					}
					var claim []buffer.Record
					for _, r := range fairOrder(recs) {
						if len(claim) == maxEventsPerRound {
							break
						}
						if _, err := decodeEvent(r); err != nil {
							b.Fatal(err)
						}
						claim = append(claim, r)
					}
					if _, err := q.Claim(claim); err != nil {
						b.Fatal(err)
					}
					q.Release()
				}
			})
		}
	}
}

// A load takes up to the load size in rows: the records acknowledged
// without a row (a stop's open record whose end is in the round) ride
// along, uncounted.
func TestLoadEndCountsRows(t *testing.T) {
	ls := func(skips string) []line {
		out := make([]line, len(skips))
		for i, c := range skips {
			out[i].skip = c == 's'
		}
		return out
	}
	for _, c := range []struct {
		lines     string
		size, end int
		loads     int
	}{
		{"srsrsrsr", 2, 4, 2}, // open, close, …: two rows and the open record before each
		{"rrrr", 2, 2, 2},
		{"ssss", 2, 4, 1}, // nothing to send: one load, no call
		{"rsssr", 1, 1, 2},
		{"r", 200, 1, 1},
	} {
		if got := loadEnd(ls(c.lines), c.size); got != c.end {
			t.Errorf("%s in loads of %d: the first takes %d, want %d", c.lines, c.size, got, c.end)
		}
		if got := loadsOf(ls(c.lines), c.size); got != c.loads {
			t.Errorf("%s in loads of %d: %d loads, want %d", c.lines, c.size, got, c.loads)
		}
	}
}
