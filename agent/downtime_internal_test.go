package agent

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/plantedge/plantedge/buffer"
)

// fairPick takes a machine at a time in turn, each machine's oldest first,
// machines in the order they first appear; it stops when no more are wanted
// (the refused record not taken) and passes take's error on.
func TestFairPick(t *testing.T) {
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
	pick := func(limit int) []string {
		var got []string
		err := fairPick(recs, func(r buffer.Record) (bool, error) {
			if len(got) == limit {
				return false, nil
			}
			got = append(got, fmt.Sprintf("%s%d", r.Key, r.Seq))
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := pick(100), []string{"a1", "b6", "c9", "a2", "c10", "a3", "a4", "a5", "a7", "a8"}; !slices.Equal(got, want) {
		t.Errorf("all: %v, want %v", got, want)
	}
	if got, want := pick(4), []string{"a1", "b6", "c9", "a2"}; !slices.Equal(got, want) {
		t.Errorf("four: %v, want %v", got, want)
	}
	if got := pick(0); len(got) != 0 {
		t.Errorf("none wanted: %v", got)
	}
	boom := errors.New("boom")
	n := 0
	if err := fairPick(recs, func(buffer.Record) (bool, error) {
		if n++; n == 3 {
			return true, boom
		}
		return true, nil
	}); !errors.Is(err, boom) || n != 3 {
		t.Errorf("error: %v after %d, want boom after 3", err, n)
	}
	if err := fairPick(nil, func(buffer.Record) (bool, error) { t.Error("called on nothing"); return true, nil }); err != nil {
		t.Error(err)
	}
}
