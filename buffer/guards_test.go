package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// An append that fails alone after its group's transaction failed reports
// that failure: it must never return success without its records (the
// agent would acknowledge values that were never written). Appends that
// arrive together share one transaction; with the file at its cap while a
// read holds the freed pages, the group fails, each append is tried alone
// and fails again. A mutation audit that dropped the error of the retry
// alone was not noticed by any test: the other quota tests append from
// one goroutine, one request per transaction.
func TestAppendFailingAloneAfterItsGroupReportsIt(t *testing.T) {
	const maxBytes = 1 << 20
	q := openTest(t, "", Options{MaxBytes: maxBytes, initialMmap: 4 << 20})
	tele, _ := fullWhileReading(t, q, maxBytes)
	commits := q.commits.Load()
	const rounds, together = 20, 8
	for round := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wrong []string
		for range together {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seqs, err := tele()
				if !errors.Is(err, ErrFull) {
					mu.Lock()
					wrong = append(wrong, "err "+errString(err)+", seqs "+seqsString(seqs))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(wrong) > 0 {
			t.Fatalf("round %d: %d of %d appends did not say the buffer is full: %v", round, len(wrong), together, wrong)
		}
	}
	if n := q.commits.Load(); n != commits {
		t.Errorf("%d commits while every append failed", n-commits)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func seqsString(s []uint64) string {
	if s == nil {
		return "none"
	}
	return "some"
}

// Ack takes the delivered records in any order: acked newest first, from
// segments and plain records alike, they are all gone — none is delivered
// again (a count record delivered twice would be counted twice). A
// mutation audit that dropped Ack's sort was not noticed by any test (the
// agent acknowledges in lane order).
func TestAckInAnyOrderRemovesEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{segmentMinBytes: 600})
	ctx := context.Background()
	for range 3 { // a few segments
		recs := make([]Record, 40)
		for i := range recs {
			recs[i] = Record{Lane: LaneCounts, Key: fmt.Sprint("m", i%3), Data: bytes.Repeat([]byte{'c'}, 30)}
		}
		if _, err := q.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m0", Data: []byte("plain")})
	got := readAll(t, q, LaneCounts)
	if len(got) != 121 {
		t.Fatalf("read %d records, want 121", len(got))
	}
	slices.Reverse(got)
	if err := q.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	if left := readAll(t, q, LaneCounts); len(left) != 0 {
		t.Errorf("%d records still pending after all were acknowledged (newest first), first seq %d", len(left), left[0].Seq)
	}
	if st := q.Stats(); st.Lanes[LaneCounts].Pending != 0 {
		t.Errorf("stats: %d pending", st.Lanes[LaneCounts].Pending)
	}
}
