package buffer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssFileKB is the process's resident file-backed memory (Linux).
func rssFileKB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "RssFile:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	t.Skip("no RssFile")
	return 0
}

// Reading a large buffer maps its pages into the process; the readers hand
// them back to the page cache as they go (and DropMappedPages does on
// demand), so draining a backlog of any size does not show the file as the
// process's resident memory, and the records read afterwards are intact
// (the pages are simply mapped again).
func TestDropMappedPages(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "buffer.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	payload := bytes.Repeat([]byte("p"), 200)
	for i := 0; i < 20; i++ {
		recs := make([]Record, 5000)
		for j := range recs {
			recs[j] = Record{Lane: LaneCounts, Key: "m", Time: time.Now(), Data: payload}
		}
		if _, err := q.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	scan := func() int {
		n := 0
		for after := uint64(0); ; {
			recs, err := q.Peek(LaneCounts, after, 10000)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !bytes.Equal(r.Data, payload) {
					t.Fatalf("record %d damaged after dropping pages", r.Seq)
				}
			}
			n += len(recs)
			if len(recs) < 10000 {
				return n
			}
			after = recs[len(recs)-1].Seq
		}
	}
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	base := rssFileKB(t)
	if n := scan(); n != 100000 { // ~25 MB of records
		t.Fatalf("read %d records", n)
	}
	scanned := rssFileKB(t)
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	dropped := rssFileKB(t)
	t.Logf("file-backed RSS %d kB before a full scan of 25 MB, %d kB after it, %d kB after DropMappedPages", base, scanned, dropped)
	if grew := scanned - base; grew > 2*dropReadPagesEvery/1024+1024 {
		t.Errorf("a full scan left %d kB more of the file mapped; the readers hand pages back every %d kB", grew, dropReadPagesEvery/1024)
	}
	if dropped > base+1024 {
		t.Errorf("DropMappedPages left %d kB mapped, %d kB before the scan", dropped, base)
	}
	if n := scan(); n != 100000 {
		t.Fatalf("read %d records after dropping pages", n)
	}

	// The drain pattern (Next + Ack) is bounded the same way.
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	base = rssFileKB(t)
	n := drain(t, q)
	drained := rssFileKB(t)
	t.Logf("file-backed RSS %d kB before draining %d records, %d kB after", base, n, drained)
	if n != 100000 {
		t.Fatalf("drained %d records", n)
	}
	if grew := drained - base; grew > 2*dropReadPagesEvery/1024+1024 {
		t.Errorf("draining left %d kB more of the file mapped", grew)
	}
	if _, err := q.Append(ctx, []Record{{Lane: LaneCounts, Key: "m", Data: payload}}); err != nil {
		t.Fatalf("append after dropping pages: %v", err)
	}
}

// The agent drops the buffer file's mapped pages every few seconds while it
// ingests (agent dropPages): drops that land between and during commits —
// appends of records and of meta values, the file growing and bbolt
// remapping it — change nothing that is read, then or later, and nothing
// that is written.
func TestDropMappedPagesWhileAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	payload := func(key string, i int) []byte {
		return bytes.Repeat([]byte(key+"/"+strconv.Itoa(i)+";"), 12)
	}
	check := func(recs []Record) error {
		for _, r := range recs {
			head, _, _ := bytes.Cut(r.Data, []byte(";"))
			k, n, ok := strings.Cut(string(head), "/")
			i, err := strconv.Atoi(n)
			if !ok || err != nil || k != r.Key || !bytes.Equal(r.Data, payload(r.Key, i)) {
				return fmt.Errorf("record %d of %s reads %.40q", r.Seq, r.Key, r.Data)
			}
		}
		return nil
	}
	const appenders, batches, perBatch = 4, 60, 500
	var wg sync.WaitGroup
	errs := make(chan error, appenders+2)
	for a := range appenders {
		key := "m" + strconv.Itoa(a)
		wg.Go(func() {
			for b := range batches {
				recs := make([]Record, perBatch)
				for j := range recs {
					recs[j] = Record{Lane: LaneCounts, Key: key, Data: payload(key, b*perBatch+j)}
				}
				state := KV{Key: "state/" + key, Value: payload(key, b)}
				if _, err := q.Append(ctx, recs, state); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var stop atomic.Bool
	var drops, reads atomic.Int64
	var side sync.WaitGroup
	side.Go(func() { // the agent's dropPages, as often as it can
		for !stop.Load() {
			if err := q.DropMappedPages(); err != nil {
				errs <- err
				return
			}
			drops.Add(1)
		}
	})
	side.Go(func() { // a reader (the forwarder, status) between the drops, of what was just appended
		after := uint64(0)
		for !stop.Load() {
			recs, err := q.Peek(LaneCounts, after, 2000)
			if err == nil {
				err = check(recs)
			}
			if after = 0; len(recs) == 2000 {
				after = recs[len(recs)-1].Seq
			}
			for a := 0; err == nil && a < appenders; a++ {
				_, err = q.Meta("state/m" + strconv.Itoa(a))
			}
			if err != nil {
				errs <- err
				return
			}
			reads.Add(1)
		}
	})
	wg.Wait()
	// The drops and reads went on while all of it was appended.
	for drops.Load() < 3 || reads.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	side.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d drops and %d reads while %d records were appended", drops.Load(), reads.Load(), appenders*batches*perBatch)

	verify := func(q *Queue, when string) {
		t.Helper()
		if err := q.DropMappedPages(); err != nil {
			t.Fatal(err)
		}
		recs := readAll(t, q, LaneCounts)
		if len(recs) != appenders*batches*perBatch {
			t.Fatalf("%s: %d records, want %d", when, len(recs), appenders*batches*perBatch)
		}
		if err := check(recs); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		next := map[string]int{}
		for _, r := range recs {
			if want := payload(r.Key, next[r.Key]); !bytes.Equal(r.Data, want) {
				t.Fatalf("%s: record %d of %s out of order: %.40q, want %.40q", when, r.Seq, r.Key, r.Data, want)
			}
			next[r.Key]++
		}
		for a := range appenders {
			key := "m" + strconv.Itoa(a)
			v, err := q.Meta("state/" + key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v, payload(key, batches-1)) {
				t.Fatalf("%s: state of %s reads %.40q, want the last batch's", when, key, v)
			}
		}
	}
	verify(q, "after the drops")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	verify(q, "reopened")
}
