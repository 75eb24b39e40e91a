package agent

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

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
