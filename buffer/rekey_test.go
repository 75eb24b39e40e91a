package buffer

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// Rekey moves the pending records of one key to another, in place (the same
// Seq, time and data), with its meta in the same commit; records a reader
// holds stay; it survives a reopen. Run with
// records as plain keys and packed in segments.
func TestRekey(t *testing.T) {
	for _, seg := range []int{-1, 1} {
		t.Run(fmt.Sprintf("segmentMinBytes=%d", seg), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			q := openTest(t, path, Options{segmentMinBytes: seg})
			ctx := context.Background()
			var recs []Record
			for i, k := range []string{"old/good", "other/good", "old/good", "old/scrap", "old/good"} {
				recs = append(recs, Record{Lane: LaneCounts, Key: k, Data: fmt.Appendf(nil, "r%d", i)})
			}
			seqs := mustAppend(t, q, recs...)
			before := q.Stats()
			// The reader holds the first three records: of old/good, the
			// first and the third.
			if got, err := q.Read(LaneCounts, 0, 3); err != nil || len(got) != 3 {
				t.Fatalf("read: %v %v", got, err)
			}
			if err := q.PutMeta(ctx, KV{Key: "alias/old/good", Value: []byte("new/good")}); err != nil {
				t.Fatal(err)
			}
			forget := KV{Key: "alias/old/good"} // written once nothing of old/good stays
			n, left, err := q.Rekey(ctx, LaneCounts, "old/good", "new/good", forget)
			if err != nil || n != 1 || left != 2 {
				t.Fatalf("rekey: %d moved, %d left, %v", n, left, err)
			}
			q.Release()
			check := func(q *Queue) {
				t.Helper()
				got, err := q.Peek(LaneCounts, 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				var keys, data []string
				for i, r := range got {
					if r.Seq != seqs[i] {
						t.Errorf("record %d: seq %d, want %d", i, r.Seq, seqs[i])
					}
					keys, data = append(keys, r.Key), append(data, string(r.Data))
				}
				if want := []string{"old/good", "other/good", "old/good", "old/scrap", "new/good"}; !slices.Equal(keys, want) {
					t.Errorf("keys %v, want %v", keys, want)
				}
				if want := []string{"r0", "r1", "r2", "r3", "r4"}; !slices.Equal(data, want) {
					t.Errorf("data %v, want %v", data, want)
				}
				if v, err := q.Meta("alias/old/good"); err != nil || string(v) != "new/good" {
					t.Errorf("meta %q %v", v, err)
				}
				if st := q.Stats(); st.Pending != before.Pending || st.Lanes[LaneCounts].Pending != 5 {
					t.Errorf("stats %+v, before %+v", st, before)
				}
			}
			check(q)
			// The held ones were released: both go, and the meta entry with
			// them.
			if n, left, err := q.Rekey(ctx, LaneCounts, "old/good", "new/good", forget); err != nil || n != 2 || left != 0 {
				t.Fatalf("second rekey: %d moved, %d left, %v", n, left, err)
			}
			if v, err := q.Meta("alias/old/good"); err != nil || v != nil {
				t.Errorf("meta after all moved: %q %v", v, err)
			}
			if n, left, err := q.Rekey(ctx, LaneCounts, "old/good", "new/good"); err != nil || n != 0 || left != 0 {
				t.Fatalf("third rekey: %d moved, %d left, %v", n, left, err)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = openTest(t, path, Options{segmentMinBytes: seg})
			got, err := q.Peek(LaneCounts, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, r := range got {
				keys = append(keys, r.Key)
			}
			if want := []string{"new/good", "other/good", "new/good", "old/scrap", "new/good"}; !slices.Equal(keys, want) {
				t.Errorf("after reopen: keys %v, want %v", keys, want)
			}
		})
	}
}
