package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

const countPad = 120

// countRecord is a count record whose payload is an additive count.
func countRecord(key string, n uint64) Record {
	return Record{Lane: LaneCounts, Key: key, Data: append(binary.BigEndian.AppendUint64(nil, n), bytes.Repeat([]byte{'.'}, countPad)...)}
}

func sumCounts(a, b Record) (Record, error) {
	if len(a.Data) < 8 || len(b.Data) < 8 {
		return Record{}, errors.New("short count record")
	}
	a.Data = append(binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(a.Data)+binary.BigEndian.Uint64(b.Data)), a.Data[8:]...)
	return a, nil
}

// syncBuffer is a log sink the committer can write to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestQuotaDropsTelemetryMergesCountsDropsEventsLast(t *testing.T) {
	const maxBytes = 1 << 20
	path := filepath.Join(t.TempDir(), "buffer.db")
	var logs syncBuffer
	// The events' own times, as the agent reads them from a record (here
	// from its sequence number).
	happened := func(r Record) (time.Time, bool) { return time.Unix(1_000_000_000+int64(r.Seq), 0), true }
	q := openTest(t, path, Options{MaxBytes: maxBytes, Merge: sumCounts, Logger: slog.New(slog.NewTextHandler(&logs, nil)), EventTime: happened})
	keys := []string{"m0", "m1", "m2", "m3"}
	appended := make(map[string]uint64)
	appendCounts := func(n int) {
		t.Helper()
		recs := make([]Record, n)
		for i := range recs {
			k := keys[i%len(keys)]
			recs[i] = countRecord(k, uint64(i+1))
			appended[k] += uint64(i + 1)
		}
		mustAppend(t, q, recs...)
	}
	checkFile := func(when string) Stats {
		t.Helper()
		st := q.Stats()
		if st.FileBytes > maxBytes {
			t.Fatalf("%s: file is %d bytes, over max %d", when, st.FileBytes, maxBytes)
		}
		if st.UsedBytes > st.LimitBytes {
			t.Fatalf("%s: used %d over budget %d", when, st.UsedBytes, st.LimitBytes)
		}
		return st
	}
	checkCounts := func(when string) {
		t.Helper()
		got := make(map[string]uint64)
		for _, r := range readAll(t, q, LaneCounts) {
			got[r.Key] += binary.BigEndian.Uint64(r.Data)
		}
		for _, k := range keys {
			if got[k] != appended[k] {
				t.Fatalf("%s: key %s holds %d pieces, %d were appended: counts lost", when, k, got[k], appended[k])
			}
		}
	}
	// Note: Read raises the read mark, which protects records from merging,
	// so checkCounts is only called once merging is over or with a fresh queue.

	events := make([]Record, 50)
	for i := range events {
		events[i] = Record{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{'e'}, 200)}
	}
	mustAppend(t, q, events...)
	appendCounts(400)
	// 1. Telemetry until the quota bites: only telemetry is dropped.
	for i := 0; q.Stats().Lanes[LaneTelemetry].Dropped == 0; i++ {
		if i > 10000 {
			t.Fatal("telemetry never hit the quota")
		}
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Lane: LaneTelemetry, Key: keys[j%4], Data: bytes.Repeat([]byte{'t'}, 200)}
		}
		mustAppend(t, q, recs...)
		checkFile("telemetry fill")
	}
	st := q.Stats()
	if st.Lanes[LaneEvents].Dropped != 0 || st.Merged != 0 || st.Lanes[LaneEvents].Pending != 50 || st.Lanes[LaneCounts].Pending != 400 {
		t.Fatalf("telemetry overflow touched other lanes: %+v", st)
	}
	// Telemetry never displaces events or counts, even when it cannot fit.
	if _, err := q.Append(context.Background(), []Record{{Lane: LaneTelemetry, Data: make([]byte, st.LimitBytes)}}); !errors.Is(err, ErrFull) {
		t.Fatalf("oversized append: %v", err)
	}

	// 2. Counts keep coming: telemetry goes first, then counts merge; events stay.
	for i := 0; q.Stats().Merged == 0; i++ {
		if i > 10000 {
			t.Fatal("counts never merged")
		}
		appendCounts(40)
		st := checkFile("count fill")
		if st.Merged > 0 && st.Lanes[LaneTelemetry].Pending != 0 {
			t.Fatalf("counts merged while %d telemetry records were pending", st.Lanes[LaneTelemetry].Pending)
		}
	}
	for range 200 {
		appendCounts(40)
		checkFile("count merge")
	}
	st = q.Stats()
	if st.Lanes[LaneEvents].Dropped != 0 || st.Lanes[LaneEvents].Pending != 50 || st.Lanes[LaneCounts].Dropped != 0 {
		t.Fatalf("merging counts dropped something: %+v", st)
	}

	// 3. Events beyond what merging frees: the oldest events go, counts never.
	var lastEvent uint64
	for i := 0; q.Stats().Lanes[LaneEvents].Dropped == 0; i++ {
		if i > 20000 {
			t.Fatal("events never dropped")
		}
		s := mustAppend(t, q, Record{Lane: LaneEvents, Key: "m1", Data: bytes.Repeat([]byte{'E'}, 400)})
		lastEvent = s[0]
		checkFile("event fill")
	}
	evs := readAll(t, q, LaneEvents)
	if evs[len(evs)-1].Seq != lastEvent || evs[0].Seq == 1 {
		t.Fatalf("events lane after drops: first %d last %d, want oldest gone, newest %d kept", evs[0].Seq, evs[len(evs)-1].Seq, lastEvent)
	}
	checkCounts("after event drops")
	st = q.Stats()
	if st.Lanes[LaneCounts].Dropped != 0 || st.Merged == 0 || st.Lanes[LaneTelemetry].Dropped == 0 {
		t.Fatalf("final stats: %+v", st)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "buffer quota reached") || !strings.Contains(l, "dropped_telemetry=") {
		t.Fatalf("drops were not logged: %q", l)
	} else if n := strings.Count(l, "buffer quota reached"); n > 10 {
		t.Fatalf("%d quota log lines: not rate-limited", n)
	} else if !strings.Contains(l, "events_of=m0") || !strings.Contains(l, "events_from=") || !strings.Contains(l, "happened_from=2001-09-09T01:") {
		t.Errorf("the log does not say whose events were dropped, and of when (buffered and happened): %q", l)
	}
	// Counters survive a restart.
	q2 := openTest(t, path, Options{MaxBytes: maxBytes, Merge: sumCounts})
	st2 := q2.Stats()
	if st2.Dropped != st.Dropped || st2.Merged != st.Merged || st2.Lanes[LaneEvents].Dropped != st.Lanes[LaneEvents].Dropped {
		t.Fatalf("counters after reopen: %+v, before %+v", st2, st)
	}
}

func TestQuotaWithoutMergeReturnsErrFull(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: maxBytesFor(512 << 10)})
	var accepted uint64
	for i := 0; ; i++ {
		if i > 100000 {
			t.Fatal("quota never reached")
		}
		_, err := q.Append(context.Background(), []Record{countRecord("m0", 1)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	var sum uint64
	for _, r := range readAll(t, q, LaneCounts) {
		sum += binary.BigEndian.Uint64(r.Data)
	}
	st := q.Stats()
	if sum != accepted || st.Dropped != 0 || st.Merged != 0 {
		t.Fatalf("after ErrFull: %d pieces stored, %d accepted, stats %+v", sum, accepted, st)
	}
	// Draining makes room again.
	recs, _ := q.Read(LaneCounts, 0, 100)
	if err := q.Ack(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, q, countRecord("m0", 1))
}

// TestMergeSkipsHandedOutRecords: records the forwarder has read may be acked
// any moment; merging them into others would lose counts on that ack.
func TestMergeSkipsHandedOutRecords(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: 512 << 10, Merge: sumCounts})
	appended := uint64(0)
	batch := func() {
		recs := make([]Record, 50)
		for i := range recs {
			recs[i] = countRecord("m0", 1)
		}
		mustAppend(t, q, recs...)
		appended += 50
	}
	batch()
	inflight, err := q.Read(LaneCounts, 0, 30)
	if err != nil {
		t.Fatal(err)
	}
	for q.Stats().Merged == 0 {
		batch()
	}
	for range 50 {
		batch()
	}
	for _, r := range readAllPeek(t, q) {
		if r.Seq <= inflight[len(inflight)-1].Seq && binary.BigEndian.Uint64(r.Data) != 1 {
			t.Fatalf("handed-out record %d was merged", r.Seq)
		}
	}
	// Ack what was handed out: exactly those 30 pieces leave.
	if err := q.Ack(context.Background(), inflight); err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, r := range readAllPeek(t, q) {
		if r.Seq <= inflight[len(inflight)-1].Seq {
			t.Fatalf("handed-out record %d still pending after its ack", r.Seq)
		}
		sum += binary.BigEndian.Uint64(r.Data)
	}
	if sum+30 != appended {
		t.Fatalf("pending %d + acked 30 != appended %d", sum, appended)
	}

	// After Release, what was handed out (and not acked) may be merged again;
	// Peek does not hand anything out.
	before := q.Stats().Lanes[LaneCounts].Pending
	if _, err := q.Read(LaneCounts, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	q.Release()
	readAllPeek(t, q)
	merged := q.Stats().Merged
	for q.Stats().Merged == merged {
		batch()
	}
	var total uint64
	for _, r := range readAllPeek(t, q) {
		total += binary.BigEndian.Uint64(r.Data)
	}
	if total+30 != appended || q.Stats().Lanes[LaneCounts].Pending >= before+50 {
		t.Fatalf("after release: %d pieces pending (+30 acked) of %d, %d records (were %d)", total, appended, q.Stats().Lanes[LaneCounts].Pending, before)
	}
}

// While a forwarding round holds the count records (Odoo slow, a call
// failing and retried), they cannot be merged: a full buffer then holds
// appends back (ErrFull) instead of dropping downtime events that merging
// would have spared; once the round gives up or acknowledges them, room is
// made by merging and no event is lost.
func TestInFlightCountsHoldAppendsBackInsteadOfDroppingEvents(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: 512 << 10, Merge: sumCounts})
	recs := make([]Record, 100)
	for i := range recs {
		recs[i] = countRecord(fmt.Sprintf("m%d", i%4), 1)
	}
	for range 20 {
		mustAppend(t, q, recs...)
	}
	if _, err := q.Read(LaneCounts, 0, 1<<20); err != nil { // the round takes them all
		t.Fatal(err)
	}
	var full error
	events := 0
	for i := 0; full == nil; i++ {
		if i > 100000 {
			t.Fatal("never full")
		}
		_, full = q.Append(context.Background(), []Record{{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{'e'}, 300)}})
		if full == nil {
			events++
		}
	}
	if !errors.Is(full, ErrQuota) || errors.Is(full, ErrDiskFull) || q.Stats().Lanes[LaneEvents].Dropped != 0 {
		t.Fatalf("full buffer with counts in flight: %v, %d events dropped", full, q.Stats().Lanes[LaneEvents].Dropped)
	}
	q.Release() // the round gave up: the counts may be merged
	mustAppend(t, q, Record{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{'e'}, 300)})
	if st := q.Stats(); st.Merged == 0 || st.Lanes[LaneEvents].Dropped != 0 || st.Lanes[LaneEvents].Pending != events+1 {
		t.Fatalf("after the round: merged %d, events dropped %d, pending %d of %d", st.Merged, st.Lanes[LaneEvents].Dropped, st.Lanes[LaneEvents].Pending, events+1)
	}
}

func readAllPeek(t *testing.T, q *Queue) []Record {
	t.Helper()
	recs, err := q.Peek(LaneCounts, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestFillDrainKeepsFileFlat: freed pages are reused, so repeated fill/drain
// rounds at the quota keep the file size flat and under MaxBytes.
func TestFillDrainKeepsFileFlat(t *testing.T) {
	const maxBytes = 2 << 20
	q := openTest(t, "", Options{MaxBytes: maxBytes, Merge: sumCounts})
	var sizes []int64
	for round := range 6 {
		for i := 0; q.Stats().Lanes[LaneTelemetry].Dropped <= uint64(round*100); i++ {
			recs := make([]Record, 40)
			for j := range recs {
				if j%4 == 0 {
					recs[j] = countRecord(fmt.Sprint("m", j%3), 1)
				} else {
					recs[j] = Record{Lane: LaneTelemetry, Key: "m", Data: bytes.Repeat([]byte{byte(j)}, 200+j)}
				}
			}
			mustAppend(t, q, recs...)
		}
		drainWith(t, q, func() ([]Record, error) { return q.Next(500) })
		st := q.Stats()
		if st.Pending != 0 || st.Bytes != 0 {
			t.Fatalf("round %d: not drained: %+v", round, st)
		}
		if st.FileBytes > maxBytes {
			t.Fatalf("round %d: file %d bytes over max %d", round, st.FileBytes, maxBytes)
		}
		sizes = append(sizes, st.FileBytes)
	}
	for i := 2; i < len(sizes); i++ {
		if sizes[i] > sizes[1] {
			t.Fatalf("file grew across fill/drain rounds: %v", sizes)
		}
	}
	t.Logf("file size per round: %v", sizes)
}

// TestCompactRefusesADamagedTree: compact of a file whose branch page
// points at itself says the file is corrupt instead of following the
// cycle until memory runs out (it did, at 1 GiB of heap and on).
func TestCompactRefusesADamagedTree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	fillFileOpts(t, path, Options{CommitWindow: time.Millisecond, segmentMinBytes: -1})
	pointBranchesAtThemselves(t, path)
	defer guardHeap(t)()
	if _, _, err := CompactFile(path); !errors.Is(err, ErrCorruptFile) {
		t.Fatalf("CompactFile = %v, want a corrupt file", err)
	}
	if err := Compact(path, path+".copy"); !errors.Is(err, ErrCorruptFile) {
		t.Fatalf("Compact = %v, want a corrupt file", err)
	}
	if _, err := os.Stat(path + ".copy"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a copy was left: %v", err)
	}
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "buffer.db"), filepath.Join(dir, "compact.db")
	q := openTest(t, src, Options{})
	recs := make([]Record, 20000)
	for i := range recs {
		recs[i] = Record{Lane: Lane(i % NumLanes), Key: "m", Data: bytes.Repeat([]byte{byte(i)}, 200)}
	}
	mustAppend(t, q, recs...)
	all, _ := q.Next(1 << 30)
	if err := q.Ack(context.Background(), all[:19900]); err != nil {
		t.Fatal(err)
	}
	if err := q.PutMeta(context.Background(), KV{"k", []byte("v")}); err != nil {
		t.Fatal(err)
	}
	before := q.Stats()
	if err := Compact(src, dst); err == nil {
		t.Fatal("compact of a file held by a running queue succeeded")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Compact(src, dst); err != nil {
		t.Fatal(err)
	}
	if err := Compact(src, dst); err == nil {
		t.Fatal("compact over an existing destination succeeded")
	}
	c := openTest(t, dst, Options{})
	after := c.Stats()
	if after.FileBytes >= before.FileBytes/4 || after.Pending != 100 || after.Bytes != before.Bytes {
		t.Fatalf("compact: before %+v, after %+v", before, after)
	}
	if v, _ := c.Meta("k"); string(v) != "v" {
		t.Fatalf("meta after compact = %q", v)
	}
	if s := mustAppend(t, c, Record{Lane: LaneEvents}); s[0] != 20001 {
		t.Fatalf("seq after compact = %d", s[0])
	}
}

// TestMaxSizeBackstop: if the logical budget were too optimistic, bbolt's
// MaxSize stops the file at MaxBytes; the queue lowers its budget, frees
// space and keeps accepting data instead of failing for good.
func TestMaxSizeBackstop(t *testing.T) {
	const maxBytes = 1 << 20
	var logs syncBuffer
	q := openTest(t, "", Options{MaxBytes: maxBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	q.budget.Store(maxBytes * 2) // pretend the estimate was far off
	for i := range 600 {
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Lane: LaneTelemetry, Key: "m", Data: bytes.Repeat([]byte{byte(i)}, 200)}
		}
		if _, err := q.Append(context.Background(), recs); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if st := q.Stats(); st.FileBytes > maxBytes {
			t.Fatalf("file %d bytes over max %d", st.FileBytes, maxBytes)
		}
	}
	st := q.Stats()
	if st.LimitBytes >= maxBytes || st.Lanes[LaneTelemetry].Dropped == 0 {
		t.Fatalf("budget not lowered or nothing dropped: %+v", st)
	}
	if !strings.Contains(logs.String(), "lowering the logical budget") {
		t.Fatalf("backstop not logged: %s", logs.String())
	}
	// Draining still works at the limit.
	recs, _ := q.Next(1 << 20)
	if err := q.Ack(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// TestMaxSizeCutOnceWhileReadsHoldFreedPages: when the file reaches its
// cap while a read is in progress, the pages the budget cut frees are
// reusable only once that read is done. The budget is cut once (the probe
// saw a second cut 10 ms after the first, which halved the buffer until a
// restart): appends wait (ErrFull) until the read ends, then fit again;
// the cut's deletes stay within max_bytes (the step kept above the
// appends' cap is theirs).
func TestMaxSizeCutOnceWhileReadsHoldFreedPages(t *testing.T) {
	const maxBytes = 1 << 20
	var logs syncBuffer
	q := openTest(t, "", Options{MaxBytes: maxBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil)), initialMmap: 4 << 20})
	append20, endRead := fullWhileReading(t, q, maxBytes)
	tele := func() error {
		_, err := append20()
		return err
	}
	for range 20 {
		if err := tele(); !errors.Is(err, ErrFull) {
			t.Fatalf("append while the read holds the freed pages: %v", err)
		}
	}
	cuts := func() int { return strings.Count(logs.String(), "lowering the logical budget") }
	if n := cuts(); n != 1 {
		t.Fatalf("budget cut %d times, want once:\n%s", n, logs.String())
	}
	if st := q.Stats(); st.FileBytes > maxBytes {
		t.Fatalf("file %d bytes, over max_bytes %d", st.FileBytes, maxBytes)
	}
	budget := q.budget.Load()
	endRead()
	for i := range 20 {
		if err := tele(); err != nil {
			t.Fatalf("append %d after the read ended: %v", i, err)
		}
	}
	if n, b := cuts(), q.budget.Load(); n != 1 || b != budget {
		t.Fatalf("after the read: %d cuts, budget %d (was %d)", n, b, budget)
	}
	if st := q.Stats(); st.FileBytes > maxBytes {
		t.Fatalf("file %d bytes, over max_bytes %d", st.FileBytes, maxBytes)
	}
}

// TestDropLogRateLimited: the first drop is logged at once, later drops of
// the burst are summed into one line per dropLogEvery, and the tail of a
// burst is logged even when traffic stops. The logged counts add up to the
// counters.
func TestDropLogRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		q, err := Open(filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 512 << 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		tele := func() {
			recs := make([]Record, 20)
			for i := range recs {
				recs[i] = Record{Lane: LaneTelemetry, Key: "m", Data: bytes.Repeat([]byte{'t'}, 200)}
			}
			mustAppend(t, q, recs...)
		}
		lines := func() []string {
			var out []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "buffer quota reached") {
					out = append(out, l)
				}
			}
			return out
		}
		for q.Stats().Lanes[LaneTelemetry].Dropped == 0 {
			tele()
		}
		if n := len(lines()); n != 1 {
			t.Fatalf("%d log lines after the first drop, want 1", n)
		}
		first := q.Stats().Lanes[LaneTelemetry].Dropped
		for q.Stats().Lanes[LaneTelemetry].Dropped < first+500 {
			tele()
		}
		if n := len(lines()); n != 1 {
			t.Fatalf("%d log lines within one burst, want 1", n)
		}
		time.Sleep(dropLogEvery)
		synctest.Wait()
		ls := lines()
		if len(ls) != 2 {
			t.Fatalf("%d log lines after the burst, want 2: %q", len(ls), ls)
		}
		var logged uint64
		for _, l := range ls {
			_, v, _ := strings.Cut(l, "dropped_telemetry=")
			v, _, _ = strings.Cut(v, " ")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			logged += n
		}
		if total := q.Stats().Lanes[LaneTelemetry].Dropped; logged != total {
			t.Fatalf("logged %d drops, counted %d", logged, total)
		}
	})
}

// TestConcurrentMergeAndAck: appenders add counts under quota pressure while a
// forwarder reads, acks and sometimes gives up a round (Release). Whatever
// merging does concurrently, acked plus pending pieces equal appended pieces.
// ErrFull is backpressure, as the agent takes it: the append is tried again.
// (It happens: pages freed by acks stay in use while a read holds them, so
// the file can reach max_bytes before the budget does; the queue then lowers
// its budget and merges, and the next try fits.)
func TestConcurrentMergeAndAck(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: 512 << 10, Merge: sumCounts, CommitWindow: time.Millisecond})
	const appenders, rounds = 4, 150
	var appended, acked, full atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, appenders+1)
	for a := range appenders {
		wg.Go(func() {
			for i := range rounds {
				recs := make([]Record, 10)
				var sum uint64
				for j := range recs {
					n := uint64(1 + (a+i+j)%7)
					recs[j] = countRecord(fmt.Sprint("m", j%3), n)
					sum += n
				}
				for try := 0; ; try++ {
					_, err := q.Append(context.Background(), recs)
					if errors.Is(err, ErrFull) && try < 1000 {
						full.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
				appended.Add(sum)
			}
		})
	}
	var fwd sync.WaitGroup
	var appendersDone atomic.Bool
	fwd.Go(func() {
		// Start reading once the quota is under pressure: a forwarder that
		// keeps up from the start leaves nothing to merge on a quiet
		// machine's schedule (seen under load).
		for q.Stats().Merged == 0 && !appendersDone.Load() {
			time.Sleep(time.Millisecond)
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			recs, err := q.Read(LaneCounts, 0, 40)
			if err != nil {
				errs <- err
				return
			}
			if i%3 == 0 {
				q.Release() // round given up: nothing acked
				continue
			}
			var sum uint64
			for _, r := range recs {
				sum += binary.BigEndian.Uint64(r.Data)
			}
			if err := q.Ack(context.Background(), recs); err != nil {
				errs <- err
				return
			}
			acked.Add(sum)
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	appendersDone.Store(true)
	close(stop)
	fwd.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var pending uint64
	for _, r := range readAllPeek(t, q) {
		pending += binary.BigEndian.Uint64(r.Data)
	}
	st := q.Stats()
	if pending+acked.Load() != appended.Load() {
		t.Fatalf("pending %d + acked %d != appended %d (merged %d)", pending, acked.Load(), appended.Load(), st.Merged)
	}
	if st.Merged == 0 {
		t.Fatal("no merge happened: the test did not exercise quota pressure")
	}
	t.Logf("appended %d pieces, acked %d, merged %d records; %d appends refused as full and tried again",
		appended.Load(), acked.Load(), st.Merged, full.Load())
}

// A write of state only (meta, no record) into a buffer full of events
// makes room like an event: the oldest events go. It was refused for good
// (taken for telemetry), holding its source's appends back.
func TestStateOnlyWriteMakesRoomInAFullBuffer(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 1 << 20, Merge: sumCounts})
	ctx := context.Background()
	for q.Stats().Lanes[LaneEvents].Dropped == 0 {
		mustAppend(t, q, Record{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{'e'}, 300)})
	}
	if _, err := q.Append(ctx, nil, KV{Key: "state/m0", Value: bytes.Repeat([]byte{'s'}, 2000)}); err != nil {
		t.Fatalf("state-only write into a full buffer: %v", err)
	}
	if v, err := q.Meta("state/m0"); err != nil || len(v) != 2000 {
		t.Fatalf("meta after the write: %d bytes, %v", len(v), err)
	}
}

// A budget cut when the file reached max_bytes lasts only while the
// buffer is near it: drained to half the cut budget, the budget is what
// max_bytes gives again (the spec audit: meta kept by the agent — a week
// of rebook records — took the file to its cap during a drain, the cuts
// added up below what the meta alone held, and every append failed until
// a restart, with the buffer empty and Odoo online).
func TestMaxSizeCutUndoneWhenDrained(t *testing.T) {
	const maxBytes = 1 << 20
	var logs syncBuffer
	q := openTest(t, "", Options{MaxBytes: maxBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	full := q.budget.Load()
	ctx := context.Background()
	// Meta the quota cannot drop, about as much as the budget.
	var meta []KV
	for i := range 1200 {
		meta = append(meta, KV{Key: fmt.Sprintf("booked/%05d", i), Value: bytes.Repeat([]byte{'b'}, 340)})
		if (i+1)%100 == 0 { // as lines are booked
			if err := q.PutMeta(ctx, meta[i-99:]...); err != nil {
				t.Fatal(err)
			}
		}
	}
	cuts := func() int { return strings.Count(logs.String(), "lowering the logical budget") }
	for i := 0; i < 2000 && cuts() == 0; i++ {
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Lane: LaneEvents, Key: "m", Data: bytes.Repeat([]byte{'e'}, 200)}
		}
		if _, err := q.Append(ctx, recs); err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	}
	if cuts() == 0 || q.budget.Load() >= full {
		t.Fatalf("no cut (budget %d of %d):\n%s", q.budget.Load(), full, logs.String())
	}
	// The meta is forgotten (pruneBooked), the records forwarded.
	for i := range meta {
		meta[i].Value = nil
	}
	if err := q.PutMeta(ctx, meta...); err != nil {
		t.Fatal(err)
	}
	drain(t, q)
	if _, err := q.Append(ctx, []Record{{Lane: LaneCounts, Key: "m/good", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if b, c := q.budget.Load(), q.ceiling.Load(); b != full || c != full {
		t.Fatalf("drained: budget %d, ceiling %d, want what max_bytes gives, %d\n%s", b, c, full, logs.String())
	}
	if !strings.Contains(logs.String(), "the budget is back to what max_bytes gives") {
		t.Errorf("the raise is not logged:\n%s", logs.String())
	}
	// And it holds as much as before the cut again.
	var n int
	for ; n < 2000; n++ {
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Lane: LaneTelemetry, Key: "m", Data: bytes.Repeat([]byte{'t'}, 200)}
		}
		if _, err := q.Append(ctx, recs); err != nil {
			t.Fatalf("append %d after the drain: %v", n, err)
		}
		if q.Stats().Lanes[LaneTelemetry].Bytes > full/2 {
			break
		}
	}
}

// drain reads and acknowledges every record, a thousand at a time, and
// returns how many there were.
func drain(t *testing.T, q *Queue) int {
	t.Helper()
	return drainWith(t, q, func() ([]Record, error) { return q.Next(1000) })
}

// Events a forwarding round has read are being booked: the quota drops the
// oldest of the others, not those — dropped, they were booked all the
// same while counted and logged as lost (the verification probe: up to 200
// a drop counted twice), and a person told of lost stops enters them again.
func TestDropSkipsHandedOutEvents(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: 1 << 20})
	ev := func(n int) {
		if err := appendEvents(q, n); err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	}
	ev(100)
	inflight, err := q.Read(LaneEvents, 0, 30)
	if err != nil || len(inflight) != 30 {
		t.Fatalf("read %d: %v", len(inflight), err)
	}
	q.budget.Store(q.Stats().UsedBytes) // full: each new event drops an old one
	ev(20)
	dropped := q.Stats().Lanes[LaneEvents].Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped")
	}
	have := pendingEvents(t, q)
	for _, r := range inflight {
		if !have[r.Seq] {
			t.Fatalf("event %d, handed out, was dropped (%d dropped)", r.Seq, dropped)
		}
	}
	if err := q.Ack(context.Background(), inflight); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats().Lanes[LaneEvents]; st.Pending+len(inflight)+int(st.Dropped) != 120 {
		t.Fatalf("pending %d + acked %d + dropped %d != 120 appended", st.Pending, len(inflight), st.Dropped)
	}
}

// Events peeked and then claimed are spared like events read: the quota
// drops the oldest of the others, also those peeked but not claimed (a
// reader that looked at many and forwards a few). Events dropped between
// the peek and the claim come back from Claim as gone, so they are not
// booked after being counted as lost.
func TestClaimSparesOnlyWhatIsClaimed(t *testing.T) {
	q := openTest(t, "", Options{MaxBytes: 1 << 20})
	ev := func(n int) {
		if err := appendEvents(q, n); err != nil {
			t.Fatal(err)
		}
	}
	ev(100)
	peeked, err := q.Peek(LaneEvents, 0, 100)
	if err != nil || len(peeked) != 100 {
		t.Fatalf("peek %d: %v", len(peeked), err)
	}
	q.budget.Store(q.Stats().UsedBytes)                    // full: each new event drops an old one
	ev(5)                                                  // drops the first five: nothing is claimed yet
	claim := append(slices.Clone(peeked[:10]), peeked[40]) // a fair share: the first ten and one further on
	gone, err := q.Claim(claim)
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 5 || gone[0].Seq != peeked[0].Seq || gone[4].Seq != peeked[4].Seq {
		t.Fatalf("gone %v, want the five dropped before the claim", seqsOf(gone))
	}
	ev(10) // drops the oldest not claimed: 11..20, between claimed ones
	have := pendingEvents(t, q)
	for _, r := range claim[5:] {
		if !have[r.Seq] {
			t.Errorf("claimed event %d was dropped", r.Seq)
		}
	}
	for _, r := range peeked[10:20] {
		if have[r.Seq] {
			t.Errorf("event %d, peeked but not claimed, is still there: the quota should have dropped it, the oldest", r.Seq)
		}
	}
	for _, r := range peeked[20:] {
		if !have[r.Seq] {
			t.Errorf("event %d was dropped before older ones", r.Seq)
		}
	}
	// Rekey (a machine renamed) leaves the claimed ones where they are.
	if moved, left, err := q.Rekey(context.Background(), LaneEvents, "m", "m2"); err != nil || left != 6 || moved != len(have)-6 {
		t.Errorf("rekey: moved %d, left %d, %v; want the 6 claimed left", moved, left, err)
	}
	if st := q.Stats().Lanes[LaneEvents]; st.Dropped != 15 {
		t.Errorf("%d dropped, want 15", st.Dropped)
	}
	q.Release()
	if moved, left, err := q.Rekey(context.Background(), LaneEvents, "m", "m2"); err != nil || left != 0 || moved != 6 {
		t.Errorf("rekey after Release: moved %d, left %d, %v; want the 6 released moved", moved, left, err)
	}
	if gone, err := q.Claim(nil); err != nil || gone != nil {
		t.Errorf("claim of nothing: %v, %v", gone, err)
	}
	if _, err := q.Claim([]Record{{Lane: NumLanes, Seq: 1}}); err == nil {
		t.Error("claim of an unknown lane: no error")
	}
}

// appendEvents appends n events of key m, 200 bytes each.
func appendEvents(q *Queue, n int) error {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Lane: LaneEvents, Key: "m", Data: bytes.Repeat([]byte{'e'}, 200)}
	}
	_, err := q.Append(context.Background(), recs)
	return err
}

// pendingEvents is the set of the events lane's pending sequence numbers.
func pendingEvents(t *testing.T, q *Queue) map[uint64]bool {
	t.Helper()
	left, err := q.Peek(LaneEvents, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	have := map[uint64]bool{}
	for _, r := range left {
		have[r.Seq] = true
	}
	return have
}

func seqsOf(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// fullWhileReading brings q, its budget estimate far off, to its file's cap
// maxBytes with tele, 20 telemetry records an append, while a read begun at
// three quarters of it (a status scan, a forwarding round's read) holds the
// freed pages. endRead ends that read (at the test's end, if not before).
func fullWhileReading(t *testing.T, q *Queue, maxBytes int64) (tele func() ([]uint64, error), endRead func()) {
	t.Helper()
	q.budget.Store(maxBytes * 2) // the estimate far off: the file's cap is what stops it
	tele = func() ([]uint64, error) {
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Lane: LaneTelemetry, Key: "m", Data: bytes.Repeat([]byte{'t'}, 200)}
		}
		return q.Append(context.Background(), recs)
	}
	var read *bolt.Tx
	endRead = func() {
		if read != nil {
			_ = read.Rollback()
			read = nil
		}
	}
	t.Cleanup(endRead)
	full := false
	for i := 0; i < 2000 && !full; i++ {
		if read == nil && q.Stats().FileBytes >= maxBytes*3/4 {
			var err error
			if read, err = q.db.Begin(false); err != nil {
				t.Fatal(err)
			}
		}
		_, err := tele()
		full = errors.Is(err, ErrFull)
		if err != nil && !full {
			t.Fatal(err)
		}
	}
	if !full || read == nil {
		t.Fatalf("the file never reached its cap with a read in progress (full %v)", full)
	}
	return tele, endRead
}
