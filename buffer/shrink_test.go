package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writtenBytes is what this process has passed to write calls so far
// (/proc/self/io wchar), or -1 where that is not available.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// fillAndDrain appends n records of 200 bytes spread over lanes, then acks
// all but the last keep of each of them.
func fillAndDrain(t *testing.T, q *Queue, n, keep int, lanes ...Lane) {
	t.Helper()
	recs := make([]Record, 2000)
	for done := 0; done < n; done += len(recs) {
		for j := range recs {
			recs[j] = Record{Lane: lanes[j%len(lanes)], Key: fmt.Sprint("m", j%7), Data: bytes.Repeat([]byte{byte(done + j)}, 200)}
		}
		mustAppend(t, q, recs...)
	}
	for _, l := range lanes {
		all := readAll(t, q, l)
		if err := q.Ack(context.Background(), all[:len(all)-keep]); err != nil {
			t.Fatal(err)
		}
	}
}

// perCommitWrite appends one record per commit and returns the bytes
// written per commit.
func perCommitWrite(t *testing.T, q *Queue) int64 {
	t.Helper()
	w0 := writtenBytes()
	for range 20 {
		mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: bytes.Repeat([]byte{'x'}, 200)})
	}
	return (writtenBytes() - w0) / 20
}

// TestShrinkAfterDrain: once a backlog has drained, the committer replaces the
// file by a compact copy: the file gets small again, commits stop writing
// bbolt's long free list, and every pending record, dead letter, meta entry
// and counter survives, in this process and after reopening.
func TestShrinkAfterDrain(t *testing.T) {
	if writtenBytes() < 0 {
		t.Skip("needs /proc/self/io")
	}
	dir := t.TempDir()

	// Without shrinking: the problem this solves.
	keepBig := openTest(t, filepath.Join(dir, "kept.db"), Options{shrinkMinFree: -1})
	fillAndDrain(t, keepBig, 150_000, 5, LaneEvents, LaneCounts, LaneTelemetry)
	bigWrite := perCommitWrite(t, keepBig)
	bigFile := keepBig.Stats().FileBytes

	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{shrinkMinFree: 1 << 20, shrinkEvery: time.Nanosecond})
	if _, err := q.Append(context.Background(), []Record{{Lane: LaneEvents, Key: "dl", Data: []byte("refused")}}); err != nil {
		t.Fatal(err)
	}
	dl := readAll(t, q, LaneEvents)
	if err := q.DeadLetter(context.Background(), dl[0], "odoo said no"); err != nil {
		t.Fatal(err)
	}
	if err := q.PutMeta(context.Background(), KV{Key: "forward/last", Value: []byte("42")}); err != nil {
		t.Fatal(err)
	}
	fillAndDrain(t, q, 150_000, 5, LaneEvents, LaneCounts, LaneTelemetry)
	// The shrink runs after the commit that drained the backlog: the next
	// request waits for it.
	smallWrite := perCommitWrite(t, q)
	if q.shrinks.Load() == 0 {
		t.Fatalf("no shrink after the backlog drained (stats %+v)", q.Stats())
	}
	st := q.Stats()
	t.Logf("after draining 150,000 records: file %d bytes and %d bytes written per one-record commit without shrinking; %d bytes and %d with",
		bigFile, bigWrite, st.FileBytes, smallWrite)
	if st.FileBytes*8 > bigFile {
		t.Fatalf("file is %d bytes after shrinking, %d without", st.FileBytes, bigFile)
	}
	if smallWrite*3 > bigWrite {
		t.Fatalf("a one-record commit writes %d bytes after shrinking, %d without", smallWrite, bigWrite)
	}

	check := func(q *Queue, when string) {
		t.Helper()
		st := q.Stats()
		if st.Pending != 3*5+20 || st.DeadLetters != 1 {
			t.Fatalf("%s: pending %d, dead letters %d; want 35, 1", when, st.Pending, st.DeadLetters)
		}
		for l := range Lane(NumLanes) {
			recs := readAll(t, q, l)
			for i := 1; i < len(recs); i++ {
				if recs[i].Seq <= recs[i-1].Seq {
					t.Fatalf("%s: lane %s out of order", when, l)
				}
			}
		}
		dls, err := q.DeadLetters()
		if err != nil || len(dls) != 1 || dls[0].Reason != "odoo said no" || string(dls[0].Record.Data) != "refused" {
			t.Fatalf("%s: dead letters %+v, %v", when, dls, err)
		}
		if v, err := q.Meta("forward/last"); err != nil || string(v) != "42" {
			t.Fatalf("%s: meta %q, %v", when, v, err)
		}
	}
	check(q, "after shrinking")
	last := readAll(t, q, LaneCounts)
	seqs := mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("after")})
	if seqs[0] <= last[len(last)-1].Seq {
		t.Fatalf("seq %d after shrinking does not follow %d", seqs[0], last[len(last)-1].Seq)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + shrinkSuffix); err == nil {
		t.Fatal("the shrink left its copy behind")
	}
	q2 := openTest(t, path, Options{})
	if q2.Recovered() != "" {
		t.Fatalf("reopened file was quarantined: %s", q2.Recovered())
	}
	if st := q2.Stats(); st.Pending != 36 {
		t.Fatalf("after reopening: pending %d, want 36", st.Pending)
	}
}

// TestShrinkWithReaders shrinks while other goroutines read, peek, take stats
// and drop mapped pages (run it under -race), and appenders keep appending.
func TestShrinkWithReaders(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{shrinkMinFree: 256 << 10, shrinkEvery: time.Nanosecond})
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := q.Peek(LaneTelemetry, 0, 100); err != nil {
					errs <- err
					return
				}
				if err := q.DropMappedPages(); err != nil {
					errs <- err
					return
				}
				_ = q.Stats()
			}
		})
	}
	var appended atomic.Int64
	wg.Go(func() {
		for !stop.Load() {
			if _, err := q.Append(context.Background(), []Record{{Lane: LaneEvents, Key: "e", Data: []byte("event")}}); err != nil {
				errs <- err
				return
			}
			appended.Add(1)
		}
	})
	for round := 0; round < 20 && q.shrinks.Load() < 3; round++ {
		fillAndDrain(t, q, 6000, 0, LaneCounts, LaneTelemetry)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if q.shrinks.Load() < 3 {
		t.Fatalf("%d shrinks, want at least 3", q.shrinks.Load())
	}
	if got := int64(len(readAll(t, q, LaneEvents))); got != appended.Load() {
		t.Fatalf("%d events in the file, %d appended", got, appended.Load())
	}
}

// TestShrinkHoldsLittleHeap: the shrink copies the live data in small
// transactions. In one, bbolt held all of it on the heap twice over (3 MB
// left pending raised the heap by 11-14 MB; a drain probe's 96 MiB file
// took the agent's RSS from 54 to 68 MB), now a few hundred KiB at a time.
func TestShrinkHoldsLittleHeap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{shrinkMinFree: -1})
	payload := bytes.Repeat([]byte{'h'}, 200)
	recs := make([]Record, 5000)
	for i := range 9 {
		for j := range recs {
			recs[j] = Record{Lane: LaneCounts, Key: "m" + strconv.Itoa(j%10), Data: payload}
			if i%3 == 0 {
				recs[j].Lane = LaneEvents // 15,000 records, 3.4 MB, stay
			}
		}
		mustAppend(t, q, recs...)
	}
	if err := q.Ack(context.Background(), readAll(t, q, LaneCounts)); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{shrinkMinFree: 1 << 20})
	heap, _, _, err := measureShrink(q)
	if err != nil {
		t.Fatal(err)
	}
	if q.shrinks.Load() != 1 {
		t.Fatalf("shrinks %d, want 1 (stats %+v)", q.shrinks.Load(), q.Stats())
	}
	if got := len(readAll(t, q, LaneEvents)); got != 15_000 {
		t.Fatalf("%d events after the shrink, want 15000", got)
	}
	t.Logf("the shrink raised the heap by %.1f MB", float64(heap)/(1<<20))
	if heap > 8<<20 {
		t.Fatalf("the shrink of 3.4 MB of records raised the heap by %.1f MB", float64(heap)/(1<<20))
	}
}

// TestShrinkLeftoverRemoved: a copy left by a shrink that was killed is
// removed at Open; the file itself is used as it is.
func TestShrinkLeftoverRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("1")})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+shrinkSuffix, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if _, err := os.Stat(path + shrinkSuffix); err == nil {
		t.Fatal("leftover copy still there")
	}
	if q.Recovered() != "" || q.Stats().Pending != 1 {
		t.Fatalf("recovered %q, pending %d", q.Recovered(), q.Stats().Pending)
	}
}

// TestShrinkReopenFails: if the file cannot be opened again after the swap
// (here: something overwrote it), the queue fails every request from then on
// and says so through Failed and Err, instead of acknowledging records it
// cannot store.
//
// A reader that came in during the swap gets that reason too, not bbolt's
// closed database (the power-cut test's child read "buffer closed").
func TestShrinkReopenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	var q *Queue
	readErr := make(chan error, 1)
	q = openTest(t, path, Options{shrinkMinFree: 256 << 10, shrinkEvery: time.Nanosecond,
		shrinkHook: func(stage string) {
			if stage == "renamed" {
				if err := os.WriteFile(path, bytes.Repeat([]byte("junk"), 4096), 0o600); err != nil {
					t.Error(err)
				}
				go func() {
					_, err := q.Peek(LaneCounts, 0, 1) // waits for the swap
					readErr <- err
				}()
				waitBlockedIn(t, "sync.RWMutex.RLock", "buffer.(*Queue).view") // past the queue's checks, waiting
			}
		}})
	fillAndDrain(t, q, 6000, 0, LaneCounts)
	select {
	case <-q.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("Failed not closed")
	}
	if q.Err() == nil || !strings.Contains(q.Err().Error(), "reopen buffer file") {
		t.Fatalf("Err = %v", q.Err())
	}
	if err := <-readErr; err == nil || !strings.Contains(err.Error(), "reopen buffer file") {
		t.Errorf("a read during the failed swap: %v, want the reason", err)
	}
	if _, err := q.Append(context.Background(), []Record{{Lane: LaneCounts, Key: "m", Data: []byte("1")}}); err == nil || !strings.Contains(err.Error(), q.Err().Error()) {
		t.Fatalf("append after failure: %v", err)
	}
	if _, err := q.Peek(LaneCounts, 0, 1); err == nil {
		t.Fatal("read after failure succeeded")
	}
}

// A buffer file deleted (or replaced) while the queue has it open lives on
// only as long as the process: the next commit writes its data back to the
// path first, so a restart finds everything that was acknowledged.
func TestFileDeletedOrReplacedWhileOpenIsWrittenBack(t *testing.T) {
	for _, replace := range []bool{false, true} {
		t.Run(map[bool]string{false: "deleted", true: "replaced"}[replace], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			q := openTest(t, path, Options{})
			mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("before")})
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if replace {
				if err := os.WriteFile(path, []byte("someone else's file"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("after")})
			if st := q.Stats(); st.Restored != 1 {
				t.Fatalf("restored %d, want 1", st.Restored)
			}
			mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("later")})
			if got := countsAfterRestart(t, q, path); got != "before,after,later" {
				t.Fatalf("after a restart: %v", got)
			}
			if replace {
				aside, _ := filepath.Glob(path + ".replaced-*")
				if len(aside) != 1 {
					t.Fatalf("the other file was not kept aside: %v", aside)
				}
				if b, _ := os.ReadFile(aside[0]); string(b) != "someone else's file" {
					t.Errorf("the file moved aside holds %q", b)
				}
			}
		})
	}
}

// If the deleted file cannot be written back (its directory gone, the disk
// full), nothing is committed — a commit into the unlinked file would be
// acknowledged and lost — until it can; then everything is there.
func TestFileThatCannotBeWrittenBackCommitsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{fileCheckEvery: 20 * time.Millisecond})
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("before")})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := q.Append(context.Background(), []Record{{Lane: LaneCounts, Key: "m1", Data: []byte("lost?")}}); err == nil {
			t.Fatal("an append into a deleted file that cannot be written back was acknowledged")
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // past fileCheckEvery: the next commit tries again
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("after")})
	if got := countsAfterRestart(t, q, path); got != "before,after" {
		t.Fatalf("after a restart: %v", got)
	}
}

// waitBlockedIn waits until a goroutine's stack names every one of fns and,
// unless state is "", shows it waiting in state (the reason runtime.Stack
// prints after its number): another goroutine has got that far. It reports
// through t.Error, so a hook's goroutine may call it.
func waitBlockedIn(t *testing.T, state string, fns ...string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		n := runtime.Stack(buf, true)
	goroutines:
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			head, _, _ := strings.Cut(g, "\n")
			if state != "" && !strings.Contains(head, "["+state) {
				continue
			}
			for _, fn := range fns {
				if !strings.Contains(g, fn) {
					continue goroutines
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no goroutine in %v waiting (%q) within 20 s", fns, state)
			return
		}
	}
}

// countsAfterRestart closes q, opens path again and returns the data of
// its count records, comma-separated.
func countsAfterRestart(t *testing.T, q *Queue, path string) string {
	t.Helper()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range readAll(t, openTest(t, path, Options{}), LaneCounts) {
		got = append(got, string(r.Data))
	}
	return strings.Join(got, ",")
}

// A compact (plantedge compact) holds the file's lock while it writes its
// copy and renames it over the file. An agent started meanwhile waits for
// the lock — of the old file, by then unlinked — and must then open the new
// one: what it wrote to the old one nobody would ever read. A second compact
// is refused as the file being in use.
func TestOpenDuringACompactTakesTheNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("before")})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// What CompactFile does, step by step: the lock first.
	held, err := boltOpen(path, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CompactFile(path); !errors.Is(err, ErrInUse) {
		t.Errorf("a second compact: %v, want ErrInUse", err)
	}
	opened := make(chan *Queue, 1)
	go func() {
		q, err := Open(path, Options{CommitWindow: time.Millisecond})
		if err != nil {
			t.Errorf("open during the compact: %v", err)
		}
		opened <- q
	}()
	waitBlockedIn(t, "", "bbolt.flock", "buffer.Open") // the open waits for the lock (2 s at most)
	tmp := path + compactSuffix
	if err := writeCopy(held, fi, tmp, 0); err != nil {
		t.Fatal(err)
	}
	if err := swapIn(tmp, path); err != nil {
		t.Fatal(err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := <-opened
	if q2 == nil {
		t.FailNow()
	}
	mustAppend(t, q2, Record{Lane: LaneCounts, Key: "m1", Data: []byte("after")})
	if err := q2.Close(); err != nil {
		t.Fatal(err)
	}
	q3 := openTest(t, path, Options{})
	var got []string
	for _, r := range readAll(t, q3, LaneCounts) {
		got = append(got, string(r.Data))
	}
	if strings.Join(got, ",") != "before,after" {
		t.Errorf("records in the file: %v, want before and after (one written to the replaced file is lost)", got)
	}
}

// The newest sequence number ever handed out survives everything that
// rewrites the file — draining it to empty, a reopen, the shrink after a
// drain, an offline compact — so a sequence number is never handed out
// twice: the agent names scrap bookings by them, and takes a booking of a
// number above the file's newest for the sign of a stale copy of the file.
func TestLastSeqSurvivesDrainShrinkAndCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{shrinkMinFree: 1, shrinkEvery: time.Nanosecond})
	fillAndDrain(t, q, 20_000, 0, LaneEvents, LaneCounts)
	want := q.LastSeq()
	if want < 20_000 {
		t.Fatalf("last seq %d after 20,000 appends", want)
	}
	// The shrink runs after the commit that drained the file: the next
	// request waits for it.
	if err := q.PutMeta(context.Background(), KV{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Pending != 0 || q.shrinks.Load() == 0 {
		t.Fatalf("pending %d, shrinks %d: want a drained, shrunk file", st.Pending, q.shrinks.Load())
	}
	if got := q.LastSeq(); got != want {
		t.Fatalf("after the shrink: %d, want %d", got, want)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if got := q.LastSeq(); got != want {
		t.Errorf("after a reopen: %d, want %d", got, want)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CompactFile(path); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if got := q.LastSeq(); got != want {
		t.Errorf("after compact: %d, want %d", got, want)
	}
	if seqs := mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("x")}); seqs[0] <= want {
		t.Errorf("the next record's seq %d is not above %d", seqs[0], want)
	}
}
