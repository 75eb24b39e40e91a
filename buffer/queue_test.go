package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string, opts Options) *Queue {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "buffer.db")
	}
	if opts.CommitWindow == 0 {
		opts.CommitWindow = time.Millisecond
	}
	if opts.segmentMinBytes == 0 && strings.HasPrefix(t.Name(), "TestEverythingInSegments/") {
		opts.segmentMinBytes = 1
	}
	q, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func mustAppend(t *testing.T, q *Queue, recs ...Record) []uint64 {
	t.Helper()
	seqs, err := q.Append(context.Background(), recs)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return seqs
}

// drainWith reads with next and acknowledges what it gives until it gives
// nothing, and returns how many records it acknowledged.
func drainWith(tb testing.TB, q *Queue, next func() ([]Record, error)) int {
	tb.Helper()
	n := 0
	for {
		got, err := next()
		if err != nil {
			tb.Fatal(err)
		}
		if len(got) == 0 {
			return n
		}
		if err := q.Ack(context.Background(), got); err != nil {
			tb.Fatal(err)
		}
		n += len(got)
	}
}

func readAll(t *testing.T, q *Queue, lane Lane) []Record {
	t.Helper()
	recs, err := q.Read(lane, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestAppendReadAckReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	src := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	seqs := mustAppend(t, q,
		Record{Lane: LaneCounts, Key: "m1", Time: src, Data: []byte("a")},
		Record{Lane: LaneCounts, Key: "m1", Data: []byte("b")},
		Record{Lane: LaneTelemetry, Key: "m2", Data: []byte("c")},
	)
	if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Fatalf("seqs = %v, want [1 2 3]", seqs)
	}
	got := readAll(t, q, LaneCounts)
	if len(got) != 2 || string(got[0].Data) != "a" || !got[0].Time.Equal(src) || got[1].Time.IsZero() {
		t.Fatalf("counts lane = %+v", got)
	}
	if after, _ := q.Read(LaneCounts, 1, 10); len(after) != 1 || after[0].Seq != 2 {
		t.Fatalf("Read after 1 = %+v", after)
	}
	st := q.Stats()
	if st.Pending != 3 || st.Lanes[LaneCounts].Pending != 2 || !st.Lanes[LaneCounts].Oldest.Equal(src) || !st.Oldest.Equal(src) {
		t.Fatalf("stats = %+v", st)
	}
	wantBytes := int64(0)
	for _, r := range append(got, readAll(t, q, LaneTelemetry)...) {
		wantBytes += int64(encodedSize(r) + elemOverhead)
	}
	if st.Bytes != wantBytes || st.FileBytes == 0 {
		t.Fatalf("stats bytes = %d (file %d), want %d", st.Bytes, st.FileBytes, wantBytes)
	}
	if err := q.Ack(context.Background(), got[:1], KV{Key: "cursor", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	// Acking something already gone is not an error.
	if err := q.Ack(context.Background(), got[:1]); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := q.Append(context.Background(), []Record{{}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := q.Read(LaneCounts, 0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}

	q2 := openTest(t, path, Options{})
	st2 := q2.Stats()
	if st2.Pending != 2 || st2.Lanes[LaneCounts].Pending != 1 || st2.Lanes[LaneCounts].Oldest.IsZero() {
		t.Fatalf("stats after reopen = %+v", st2)
	}
	if v, _ := q2.Meta("cursor"); string(v) != "1" {
		t.Fatalf("meta after reopen = %q", v)
	}
	if s := mustAppend(t, q2, Record{Lane: LaneEvents}); s[0] != 4 {
		t.Fatalf("seq after reopen = %d, want 4", s[0])
	}
}

func TestLanePriority(t *testing.T) {
	q := openTest(t, "", Options{})
	var want [NumLanes][]uint64
	for i := range 30 {
		lane := Lane((i * 7) % NumLanes)
		s := mustAppend(t, q, Record{Lane: lane, Key: fmt.Sprint("m", i%4), Data: []byte{byte(i)}})
		want[lane] = append(want[lane], s[0])
	}
	got, err := q.Next(1000)
	if err != nil {
		t.Fatal(err)
	}
	var flat []uint64
	for l := range Lane(NumLanes) {
		flat = append(flat, want[l]...)
	}
	if len(got) != len(flat) {
		t.Fatalf("Next returned %d records, want %d", len(got), len(flat))
	}
	for i, r := range got {
		if r.Seq != flat[i] {
			t.Fatalf("Next[%d] = seq %d lane %s, want seq %d (events, then counts, then telemetry)", i, r.Seq, r.Lane, flat[i])
		}
	}
	// A limit smaller than the events lane returns only events.
	few, _ := q.Next(3)
	for _, r := range few {
		if r.Lane != LaneEvents {
			t.Fatalf("Next(3) returned %s record", r.Lane)
		}
	}
	// Once events are acked, counts come first; a new event jumps the queue.
	if err := q.Ack(context.Background(), got[:len(want[LaneEvents])]); err != nil {
		t.Fatal(err)
	}
	ev := mustAppend(t, q, Record{Lane: LaneEvents, Key: "m0"})
	n, _ := q.Next(2)
	if n[0].Seq != ev[0] || n[1].Lane != LaneCounts || n[1].Seq != want[LaneCounts][0] {
		t.Fatalf("after ack: Next = %+v", n)
	}
}

func TestConcurrentAppenders(t *testing.T) {
	q := openTest(t, "", Options{CommitWindow: 2 * time.Millisecond, CommitRecords: 64})
	const writers, appends = 12, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				n := 1 + (w+i)%5
				recs := make([]Record, n)
				for j := range recs {
					recs[j] = Record{Lane: Lane(j % NumLanes), Key: fmt.Sprint("w", w), Data: binary.BigEndian.AppendUint32(nil, uint32(i*10+j))}
				}
				seqs, err := q.Append(context.Background(), recs, KV{Key: fmt.Sprint("w", w), Value: []byte(fmt.Sprint(i))})
				if err != nil {
					errs <- err
					return
				}
				for j := 1; j < n; j++ {
					if seqs[j] != seqs[j-1]+1 {
						errs <- fmt.Errorf("writer %d: seqs %v not consecutive", w, seqs)
						return
					}
				}
				if i%7 == 0 {
					if _, err := q.Next(10); err != nil {
						errs <- err
						return
					}
					_ = q.Stats()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	seen := make(map[uint64]bool)
	for l := range Lane(NumLanes) {
		last := make(map[string]uint32)
		for _, r := range readAll(t, q, l) {
			if seen[r.Seq] {
				t.Fatalf("seq %d twice", r.Seq)
			}
			seen[r.Seq] = true
			v := binary.BigEndian.Uint32(r.Data)
			if p, ok := last[r.Key]; ok && v <= p {
				t.Fatalf("key %s lane %s: %d after %d: per-key order broken", r.Key, l, v, p)
			}
			last[r.Key] = v
			total++
		}
	}
	want := 0
	for w := range writers {
		for i := range appends {
			want += 1 + (w+i)%5
		}
		if v, _ := q.Meta(fmt.Sprint("w", w)); string(v) != fmt.Sprint(appends-1) {
			t.Fatalf("meta w%d = %q", w, v)
		}
	}
	if total != want || q.Stats().Pending != want {
		t.Fatalf("read %d records, stats %d, want %d", total, q.Stats().Pending, want)
	}
}

func TestMeta(t *testing.T) {
	q := openTest(t, "", Options{})
	ctx := context.Background()
	if v, err := q.Meta("absent"); v != nil || err != nil {
		t.Fatalf("absent meta = %q, %v", v, err)
	}
	if err := q.PutMeta(ctx, KV{"counter/m1/good", []byte("10")}, KV{"counter/m2/good", []byte("20")}, KV{"wo/m1", []byte("WO-1")}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err := q.MetaPrefix("counter/", func(k string, v []byte) error {
		keys = append(keys, k+"="+string(v))
		return nil
	})
	if err != nil || strings.Join(keys, ",") != "counter/m1/good=10,counter/m2/good=20" {
		t.Fatalf("MetaPrefix = %v, %v", keys, err)
	}
	stop := errors.New("stop")
	if err := q.MetaPrefix("", func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("MetaPrefix error = %v", err)
	}
	before := q.Stats().MetaBytes
	if err := q.PutMeta(ctx, KV{Key: "wo/m1"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := q.Meta("wo/m1"); v != nil {
		t.Fatalf("deleted meta = %q", v)
	}
	if after := q.Stats().MetaBytes; after != before-metaSize(len("wo/m1"), len("WO-1")) {
		t.Fatalf("meta bytes %d -> %d", before, after)
	}
	if err := q.PutMeta(ctx, KV{Key: ""}); err == nil {
		t.Fatal("empty meta key accepted")
	}
}

func TestDeadLetterRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	mustAppend(t, q,
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e1")},
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e2")},
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e3")},
	)
	recs := readAll(t, q, LaneEvents)
	if err := q.DeadLetter(ctx, recs[1], "odoo: ValidationError"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, q, LaneEvents); len(got) != 2 || got[1].Seq != recs[2].Seq {
		t.Fatalf("lane after dead letter = %+v", got)
	}
	if err := q.DeadLetter(ctx, recs[1], "again"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dead letter of a missing record: %v", err)
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	d := dls[0]
	if d.Reason != "odoo: ValidationError" || d.At.IsZero() || d.Record.Seq != recs[1].Seq || string(d.Record.Data) != "e2" {
		t.Fatalf("dead letter = %+v", d)
	}
	if st := q.Stats(); st.DeadLetters != 1 || st.Pending != 2 || st.DeadLetterBytes == 0 {
		t.Fatalf("stats = %+v", st)
	}
	// Survives a restart.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if st := q.Stats(); st.DeadLetters != 1 {
		t.Fatalf("dead letters after reopen = %d", st.DeadLetters)
	}
	// Retry puts it back in its place (same Seq, so before e3).
	if err := q.RetryDeadLetter(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, q, LaneEvents)
	if len(got) != 3 || got[1].Seq != recs[1].Seq || string(got[1].Data) != "e2" {
		t.Fatalf("lane after retry = %+v", got)
	}
	if err := q.RetryDeadLetter(ctx, d.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second retry: %v", err)
	}
	// Dead-letter again and drop: gone, counted.
	if err := q.DeadLetter(ctx, got[0], "permanent"); err != nil {
		t.Fatal(err)
	}
	dls, _ = q.DeadLetters()
	if len(dls) != 1 || dls[0].ID <= d.ID {
		t.Fatalf("dead letters = %+v (ids must not be reused)", dls)
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	st := q.Stats()
	// An operator's drop is counted apart from what the quota dropped.
	if st.DeadLetters != 0 || st.DeadLetterBytes != 0 || st.DeadDropped != 1 || st.Dropped != 0 || st.Lanes[LaneEvents].Dropped != 0 || st.Pending != 2 {
		t.Fatalf("stats after drop = %+v", st)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if st := q.Stats(); st.DeadDropped != 1 || st.Dropped != 0 {
		t.Fatalf("dropped counters after reopen: %+v", st)
	}

	// A count record comes back as the newest of its lane: a reader may
	// hold the range of its old Seq in flight and acknowledge it by Seq.
	mustAppend(t, q,
		Record{Lane: LaneCounts, Key: "m1", Data: []byte("c1")},
		Record{Lane: LaneCounts, Key: "m1", Data: []byte("c2")},
	)
	counts := readAll(t, q, LaneCounts)
	if err := q.DeadLetter(ctx, counts[0], "refused"); err != nil {
		t.Fatal(err)
	}
	dls, _ = q.DeadLetters()
	if err := q.RetryDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, q, LaneCounts)
	if len(after) != 2 || string(after[1].Data) != "c1" || after[1].Seq <= counts[1].Seq {
		t.Fatalf("counts after retry = %+v, want c1 after c2 (seq > %d)", after, counts[1].Seq)
	}
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1", Data: []byte("c3")})
	if got := readAll(t, q, LaneCounts); len(got) != 3 || got[2].Seq <= after[1].Seq {
		t.Fatalf("a later append reused the retried record's Seq: %+v", got)
	}
}

func TestCorruptFileQuarantined(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Repeat([]byte("not a bbolt file "), 4096))
		}},
		{"truncated", func(t *testing.T, path string) {
			fillFile(t, path)
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/3); err != nil {
				t.Fatal(err)
			}
		}},
		{"short", func(t *testing.T, path string) {
			fillFile(t, path)
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}},
		{"bad meta pages", func(t *testing.T, path string) {
			fillFile(t, path)
			spoilAt(t, path, 0, 8192)
		}},
		{"wild page id", func(t *testing.T, path string) {
			// Point the first child of every branch page far outside the
			// file: following it must fault recoverably, not kill the process.
			// One key per record, so that the lanes need branch pages.
			fillFileOpts(t, path, Options{CommitWindow: time.Millisecond, segmentMinBytes: -1})
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for off := 2 * 4096; off+4096 <= len(b); off += 4096 {
				if binary.LittleEndian.Uint16(b[off+8:]) == 0x01 && binary.LittleEndian.Uint64(b[off:]) == uint64(off/4096) {
					binary.LittleEndian.PutUint64(b[off+16+8:], 1<<40)
					n++
				}
			}
			if n == 0 {
				t.Fatal("no branch page found to damage")
			}
			writeFile(t, path, b)
		}},
		{"branch page cycle", func(t *testing.T, path string) {
			// Bit rot or a torn write that points a branch page's child
			// back at the page itself: every cursor (and bbolt's own
			// Check) descended forever, growing memory, at every start.
			fillFileOpts(t, path, Options{CommitWindow: time.Millisecond, segmentMinBytes: -1})
			pointBranchesAtThemselves(t, path)
		}},
		{"freelist lists a page in use", func(t *testing.T, path string) {
			// bbolt's "page already freed": the first commit at the start
			// took the live page for new data, and the tree it left made
			// the start loop as above.
			fillFile(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			meta := 0 // the newer meta page, by its transaction id
			if binary.LittleEndian.Uint64(b[4096+64:]) > binary.LittleEndian.Uint64(b[64:]) {
				meta = 4096
			}
			// List every page but the meta pages and the freelist's own.
			free := int(binary.LittleEndian.Uint64(b[meta+48:]))
			fp, n := free*4096, 0
			for id := 2; id < len(b)/4096 && n < 400; id++ {
				if id != free {
					binary.LittleEndian.PutUint64(b[fp+16+8*n:], uint64(id))
					n++
				}
			}
			binary.LittleEndian.PutUint16(b[fp+10:], uint16(n))
			// The meta page's checksum does not cover the freelist page.
			writeFile(t, path, b)
		}},
		{"bad data page", func(t *testing.T, path string) {
			fillFile(t, path)
			fi, _ := os.Stat(path)
			// Damage every page past the meta pages: whichever holds the
			// lanes, the check or the scan must notice.
			for off := int64(4 * 4096); off < fi.Size(); off += 4096 {
				spoilAt(t, path, off+100, 64)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "buffer.db")
			tc.spoil(t, path)
			defer guardHeap(t)()
			if _, err := Open(path, Options{ReadOnly: true}); err == nil {
				t.Fatal("read-only open of a corrupt file succeeded")
			}
			var logs syncBuffer
			q := openTest(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			t.Log(logs.String())
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "moved_to=") {
				t.Fatalf("quarantine not logged loudly: %q", logs.String())
			}
			moved := q.Recovered()
			if moved == "" || !strings.HasPrefix(filepath.Base(moved), "buffer.db.corrupt-") {
				t.Fatalf("Recovered() = %q", moved)
			}
			if _, err := os.Stat(moved); err != nil {
				t.Fatalf("moved file: %v", err)
			}
			if st := q.Stats(); st.Pending != 0 {
				t.Fatalf("fresh buffer has %d records", st.Pending)
			}
			if s := mustAppend(t, q, Record{Lane: LaneCounts, Data: []byte("x")}); s[0] != 1 {
				t.Fatalf("first seq in fresh buffer = %d", s[0])
			}
		})
	}
}

// pointBranchesAtThemselves makes the first child of every branch page of
// the file at path the page itself: a cycle in the tree.
func pointBranchesAtThemselves(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 2 * 4096; off+4096 <= len(b); off += 4096 {
		if id := binary.LittleEndian.Uint64(b[off:]); binary.LittleEndian.Uint16(b[off+8:]) == 0x01 && id == uint64(off/4096) {
			binary.LittleEndian.PutUint64(b[off+16+8:], id)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no branch page found to damage")
	}
	writeFile(t, path, b)
}

// One damaged meta page is no corrupt file: bbolt checks both and opens by
// the other, and so does the page tree's check (which read the meta pages'
// headers as it reads the tree's, and called such a file corrupt).
func TestOneDamagedMetaPageIsNoCorruptFile(t *testing.T) {
	for _, meta := range []int{0, 1} {
		t.Run(fmt.Sprint("meta", meta), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			fillFile(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The newer meta page (by its transaction id) is the last
			// commit's: damaged, bbolt opens the one before.
			newer := binary.LittleEndian.Uint64(b[meta*4096+64:]) > binary.LittleEndian.Uint64(b[(1-meta)*4096+64:])
			for i := range 4096 {
				b[meta*4096+i] = byte(i*7 + 1)
			}
			writeFile(t, path, b)
			q := openTest(t, path, Options{})
			if st := q.Stats(); !newer && st.Pending != 3000 {
				t.Errorf("%d records pending, want the 3,000", st.Pending)
			}
			if matches, _ := filepath.Glob(path + ".corrupt-*"); len(matches) != 0 {
				t.Errorf("moved aside: %v", matches)
			}
		})
	}
}

// An empty buffer file (0 bytes) is said: a read-only open (the stopped
// status) says it is empty, not "bad file descriptor"; a start warns that
// what it held is lost, and starts afresh.
func TestEmptyFileIsSaid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	writeFile(t, path, nil)
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "empty (0 bytes)") {
		t.Errorf("read-only open of an empty file: %v", err)
	}
	var logs syncBuffer
	q := openTest(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "buffer file found empty (0 bytes)") {
		t.Errorf("not said: %s", logs.String())
	}
	mustAppend(t, q, Record{Lane: LaneEvents, Key: "m", Data: []byte("x")})
	if got := len(readAll(t, q, LaneEvents)); got != 1 {
		t.Errorf("%d records after the fresh start, want 1", got)
	}
}

// guardHeap ends the test binary once its heap passes 1 GiB: an open that
// loops on a damaged tree grows memory without end, and would take the
// machine with it rather than fail. The returned func stops the guard.
func guardHeap(t *testing.T) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > 1<<30 {
				panic(fmt.Sprintf("%s: heap at %d MiB: it loops on the damaged file", t.Name(), ms.HeapAlloc>>20))
			}
		}
	}()
	return func() { close(done) }
}

func TestOpenErrorsAreNotCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneEvents})
	// A second agent on the same file must fail, not quarantine a healthy file.
	if _, err := Open(path, Options{}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second open of a locked file: %v, want ErrLocked", err)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("healthy locked file was moved aside: %v", m)
	}
	if _, err := Open(filepath.Join(dir, "missing", "buffer.db"), Options{}); err == nil {
		t.Fatal("open in a missing directory succeeded")
	}
	if _, err := Open(path, Options{CommitWindow: time.Second}); err == nil {
		t.Fatal("commit window above 20ms accepted")
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneCounts, Data: []byte("1")}, Record{Lane: LaneTelemetry})
	if err := q.PutMeta(context.Background(), KV{"k", []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if st := ro.Stats(); st.Pending != 2 {
		t.Fatalf("read-only stats = %+v", st)
	}
	if v, _ := ro.Meta("k"); string(v) != "v" {
		t.Fatalf("read-only meta = %q", v)
	}
	if _, err := ro.Append(context.Background(), []Record{{}}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only append: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none.db"), Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

// TestGroupCommitWindow uses a fake clock: a lone append commits at once; an
// append waits for the window while another caller is still on its way (a
// phantom in-flight request stands in for it); CommitRecords waiting commit
// at once; concurrent appends share one transaction; a caller that gives up
// before the commit writes nothing.
func TestGroupCommitWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		q, err := Open(filepath.Join(dir, "buffer.db"), Options{CommitWindow: 10 * time.Millisecond, CommitRecords: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		ctx := context.Background()

		start := time.Now()
		mustAppend(t, q, Record{Lane: LaneEvents})
		if d := time.Since(start); d != 0 {
			t.Fatalf("lone append waited %v", d)
		}

		q.inflight.Add(1) // someone else is about to append
		start = time.Now()
		mustAppend(t, q, Record{Lane: LaneEvents})
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Fatalf("append with another caller in flight committed after %v, want the 10ms window", d)
		}

		start = time.Now()
		mustAppend(t, q, make([]Record, 8)...)
		if d := time.Since(start); d != 0 {
			t.Fatalf("append of CommitRecords waited %v", d)
		}

		commits := q.commits.Load()
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { mustAppend(t, q, Record{Lane: LaneCounts}) })
		}
		wg.Wait()
		if n := q.commits.Load() - commits; n != 1 {
			t.Fatalf("5 concurrent appends took %d commits, want 1", n)
		}

		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() {
			_, err := q.Append(cctx, []Record{{Lane: LaneTelemetry, Data: []byte("abandoned")}})
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled append: %v", err)
		}
		q.inflight.Add(-1) // the phantom leaves
		time.Sleep(20 * time.Millisecond)
		if got := readAll(t, q, LaneTelemetry); len(got) != 0 {
			t.Fatalf("abandoned append was written: %+v", got)
		}
		if n := q.inflight.Load(); n != 0 {
			t.Fatalf("in-flight count %d after all callers returned", n)
		}
	})
}

// updateClosed closes q and changes its file with fn as plain bbolt: a
// value as an older version, or damage, left it.
func updateClosed(t *testing.T, q *Queue, fn func(tx *bolt.Tx) error) {
	t.Helper()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(q.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(fn), db.Close()); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fillFile creates a valid buffer with some records in every lane.
// fillFile appends 3,000 records of 100 bytes in one commit: each lane's
// thousand is one segment.
func fillFile(t *testing.T, path string) {
	t.Helper()
	fillFileOpts(t, path, Options{CommitWindow: time.Millisecond})
}

func fillFileOpts(t *testing.T, path string, opts Options) {
	t.Helper()
	q, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, 3000)
	for i := range recs {
		recs[i] = Record{Lane: Lane(i % NumLanes), Key: "m", Data: bytes.Repeat([]byte{byte(i)}, 100)}
	}
	if _, err := q.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func spoilAt(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, n), off); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecordDeadLettered: a record whose bytes rotted (the B+tree is
// sound, its checksum is not) goes to the dead letters with its raw bytes;
// the rest of the file is kept.
// damageFixture appends 300 count records "payload-NNNN-xxx…" (and extra),
// closes q and returns the records, the file's bytes and the offset of
// record 123's payload in them, for a test to damage and write back.
func damageFixture(t *testing.T, q *Queue, extra ...Record) ([]Record, []byte, int) {
	t.Helper()
	recs := make([]Record, 300)
	for i := range recs {
		recs[i] = Record{Lane: LaneCounts, Key: "m", Data: []byte(fmt.Sprintf("payload-%04d-%s", i, strings.Repeat("x", 50)))}
	}
	mustAppend(t, q, recs...)
	if len(extra) > 0 {
		mustAppend(t, q, extra...)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(q.Path())
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("payload-0123-"))
	if i < 0 {
		t.Fatal("payload not found in file")
	}
	return recs, b, i
}

// reopenDamaged writes b as the file at path and opens it, logging into the
// returned buffer; the file must be kept, not quarantined.
func reopenDamaged(t *testing.T, path string, b []byte) (*Queue, *syncBuffer) {
	t.Helper()
	writeFile(t, path, b)
	logs := &syncBuffer{}
	q := openTest(t, path, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if q.Recovered() != "" {
		t.Fatalf("file quarantined for damaged records: %s", q.Recovered())
	}
	return q, logs
}

func TestDamagedRecordDeadLettered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	_, b, i := damageFixture(t, q)
	b[i+10] ^= 0xff
	q, logs := reopenDamaged(t, path, b)
	st := q.Stats()
	if st.Pending != 299 || st.DeadLetters != 1 {
		t.Fatalf("stats = %+v", st)
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].Reason, "damaged record") || dls[0].Record.Seq != 124 || !bytes.Contains(dls[0].Record.Data, []byte("payload-01")) {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	if got := readAll(t, q, LaneCounts); len(got) != 299 {
		t.Fatalf("read %d records", len(got))
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("damaged record not logged: %s", logs.String())
	}
	if s := mustAppend(t, q, Record{Lane: LaneEvents}); s[0] != 301 {
		t.Fatalf("next seq = %d", s[0])
	}
	// Its bytes cannot go back into a lane (a reader could never decode
	// them): a retry is refused and it stays; it can be dropped.
	ctx := context.Background()
	if !dls[0].Damaged {
		t.Fatal("dead letter of a damaged record not marked damaged")
	}
	if err := q.RetryDeadLetter(ctx, dls[0].ID); !errors.Is(err, ErrDamaged) {
		t.Fatalf("retry of a damaged record: %v, want ErrDamaged", err)
	}
	if st := q.Stats(); st.Pending != 300 || st.DeadLetters != 1 {
		t.Fatalf("after the refused retry: %+v", st)
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDeadLetterKeepsTheFile: a dead letter whose bytes rotted is
// listed as damaged with its bytes; the file and everything else in it is
// kept (it used to be moved aside as corrupt, pending records and all).
func TestDamagedDeadLetterKeepsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	seqs := mustAppend(t, q, Record{Lane: LaneEvents, Key: "m1", Data: []byte("refused")}, Record{Lane: LaneEvents, Key: "m1", Data: []byte("pending")})
	if err := q.DeadLetter(ctx, Record{Lane: LaneEvents, Key: "m1", Seq: seqs[0]}, "reason-marker"); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("reason-marker"))
		if j < 0 {
			break
		}
		i += j + len("reason-marker")
		b[i] ^= 0xff // the first byte of the record behind the reason
		n++
	}
	if n == 0 {
		t.Fatal("dead letter not found in the file")
	}
	q, _ = reopenDamaged(t, path, b)
	if st := q.Stats(); st.Pending != 1 || st.DeadLetters != 1 {
		t.Fatalf("stats = %+v", st)
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 || !dls[0].Damaged || !strings.HasPrefix(dls[0].Reason, "damaged dead letter") || !bytes.Contains(dls[0].Record.Data, []byte("refused")) {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	if d, ok, err := q.LatestDeadLetter(); err != nil || !ok || d.ID != dls[0].ID {
		t.Fatalf("latest = %+v %v %v", d, ok, err)
	}
	if err := q.RetryDeadLetter(ctx, dls[0].ID); !errors.Is(err, ErrDamaged) {
		t.Fatalf("retry: %v, want ErrDamaged", err)
	}
	if got := readAll(t, q, LaneEvents); len(got) != 1 || string(got[0].Data) != "pending" {
		t.Fatalf("events = %+v", got)
	}
	if dls[0].LaneName() != "unknown" {
		t.Errorf("lane of a damaged dead letter: %s, want unknown", dls[0].LaneName())
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	// Its drop is counted, not as any lane's (its lane is unknown), also
	// after a restart.
	check := func(st Stats) {
		t.Helper()
		if st.DeadLetters != 0 || st.DamagedDropped != 1 || st.DeadDropped != 1 || st.Dropped != 0 || st.Lanes[LaneTelemetry].Dropped != 0 || st.Lanes[LaneEvents].Dropped != 0 {
			t.Fatalf("after drop: %+v", st)
		}
	}
	check(q.Stats())
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, path, Options{}).Stats())
}

// Dead letters are read a page at a time, and the newest without reading
// them all.
func TestDeadLetterPages(t *testing.T) {
	q := openTest(t, "", Options{})
	ctx := context.Background()
	if _, ok, err := q.LatestDeadLetter(); ok || err != nil {
		t.Fatalf("latest of none: %v %v", ok, err)
	}
	for i := range 25 {
		seqs := mustAppend(t, q, Record{Lane: LaneEvents, Key: "m1", Data: []byte{byte('a' + i)}})
		if err := q.DeadLetter(ctx, Record{Lane: LaneEvents, Key: "m1", Seq: seqs[0]}, fmt.Sprint("reason ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []uint64
	for after := uint64(0); ; {
		page, err := q.DeadLetterPage(after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 10 {
			t.Fatalf("page of %d", len(page))
		}
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(ids) != 25 || !slices.IsSorted(ids) || ids[0] != 1 {
		t.Fatalf("paged ids %v", ids)
	}
	d, ok, err := q.LatestDeadLetter()
	if err != nil || !ok || d.ID != ids[24] || d.Reason != "reason 24" {
		t.Fatalf("latest = %+v %v %v", d, ok, err)
	}
}

// The newest dead letter is kept by the queue, not read: status asks for
// it on every call, and a read transaction waits behind a commit whose
// meta page write stalls on the disk (status hung until a frozen disk was
// thawed). It stays what a read of the file says across dead letters
// made, retried and dropped, and a reopen; with every read held (as the
// shrink holds them) it still answers.
func TestLatestDeadLetterKeptWithoutARead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	read := func() (d DeadLetter, ok bool) {
		err := q.view(func(tx *bolt.Tx) error {
			if k, v := tx.Bucket(bucketDead).Cursor().Last(); k != nil {
				d, ok = deadLetterAt(beUint64(k), v), true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return d, ok
	}
	check := func(step string, wantReason string) {
		t.Helper()
		got, ok, err := q.LatestDeadLetter()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		want, wantOK := read()
		if ok != wantOK || got.ID != want.ID || got.Reason != want.Reason || !got.At.Equal(want.At) || got.Damaged != want.Damaged ||
			got.Record.Seq != want.Record.Seq || got.Record.Key != want.Record.Key || !bytes.Equal(got.Record.Data, want.Record.Data) {
			t.Fatalf("%s: kept %+v (%v), the file says %+v (%v)", step, got, ok, want, wantOK)
		}
		if got.Reason != wantReason {
			t.Fatalf("%s: latest %q, want %q", step, got.Reason, wantReason)
		}
	}
	check("none", "")
	deadLetter := func(key, reason string) {
		t.Helper()
		seqs := mustAppend(t, q, Record{Lane: LaneEvents, Key: key, Data: []byte(reason)})
		if err := q.DeadLetter(ctx, Record{Lane: LaneEvents, Key: key, Seq: seqs[0]}, reason); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter("m1", "first")
	deadLetter("m1", "second")
	check("two made", "second")
	seqs := mustAppend(t, q, Record{Lane: LaneCounts, Key: "m2/good", Data: []byte("1")}, Record{Lane: LaneCounts, Key: "m2/good", Data: []byte("2")})
	if err := q.DeadLetterAs(ctx, []Record{{Lane: LaneCounts, Seq: seqs[0]}, {Lane: LaneCounts, Seq: seqs[1]}},
		Record{Lane: LaneCounts, Key: "m2/good", Seq: seqs[1], Data: []byte("3")}, "folded"); err != nil {
		t.Fatal(err)
	}
	check("one made of two records", "folded")
	// A move refused (the record is not pending) changes nothing.
	if err := q.DeadLetter(ctx, Record{Lane: LaneEvents, Key: "m1", Seq: 999}, "refused"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dead letter of no record: %v", err)
	}
	check("a move refused", "folded")
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 3 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); err != nil { // not the newest
		t.Fatal(err)
	}
	check("an older one dropped", "folded")
	if err := q.RetryDeadLetter(ctx, dls[2].ID); err != nil { // the newest
		t.Fatal(err)
	}
	check("the newest retried", "second")
	deadLetter("m3", "third")
	check("another made", "third")
	third, _, _ := q.LatestDeadLetter()
	if err := q.DropDeadLetter(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	check("the newest dropped", "second")
	// Every read held, as a commit stalled in its meta page holds them in
	// bbolt: the newest answers all the same.
	q.dbMu.Lock()
	answered := make(chan string, 1)
	go func() {
		d, _, _ := q.LatestDeadLetter()
		answered <- d.Reason
	}()
	select {
	case r := <-answered:
		if r != "second" {
			t.Errorf("latest with the reads held %q, want second", r)
		}
	case <-time.After(time.Minute): // a hang, not a timing
		t.Error("LatestDeadLetter waited for the reads held")
	}
	q.dbMu.Unlock()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.LatestDeadLetter(); !errors.Is(err, ErrClosed) {
		t.Errorf("latest of a closed queue: %v, want ErrClosed", err)
	}
	q = openTest(t, path, Options{})
	check("reopened", "second")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{ReadOnly: true}) // a stopped agent's status
	check("opened read-only", "second")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	if err := q.RetryDeadLetter(ctx, dls[1].ID); err != nil { // the last one
		t.Fatal(err)
	}
	check("all gone", "")
}

// InUse tells a file an open queue holds (a running agent) from one nobody
// holds, at once, and a missing file is not in use.
func TestInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	if used, err := InUse(path); used || err != nil {
		t.Fatalf("missing file: in use %v, %v", used, err)
	}
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if used, err := InUse(path); !used || err != nil {
		t.Fatalf("open queue: in use %v, %v", used, err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if used, err := InUse(path); used || err != nil {
		t.Fatalf("closed queue: in use %v, %v", used, err)
	}
	ro, err := Open(path, Options{ReadOnly: true}) // status reading a stopped agent's file
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if used, err := InUse(path); used || err != nil {
		t.Fatalf("read-only reader: in use %v, %v", used, err)
	}
}

// A file written before dead-letter drops had their own counter: its
// damaged drops and its counts lane's drops (the quota never drops counts)
// were an operator's, and become the operator-drop count — read-only (an
// offline status) and, for good, at a read-write open.
func TestDeadDroppedFromAnOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	updateClosed(t, openTest(t, path, Options{}), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSys)
		for k, v := range map[string]uint64{string(sysDroppedDamaged): 2, string(sysDropped[LaneCounts]): 3, string(sysDropped[LaneTelemetry]): 7} {
			if err := putUint64(b, []byte(k), v); err != nil {
				return err
			}
		}
		return b.Delete(sysDroppedDead)
	})
	check := func(how string, st Stats) {
		t.Helper()
		if st.DeadDropped != 5 || st.DamagedDropped != 2 || st.Lanes[LaneCounts].Dropped != 0 || st.Lanes[LaneTelemetry].Dropped != 7 || st.Dropped != 7 {
			t.Fatalf("%s: stats of an older file: %+v", how, st)
		}
	}
	ro := openTest(t, path, Options{ReadOnly: true})
	check("read-only", ro.Stats())
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"first read-write open", "reopened"} {
		q := openTest(t, path, Options{})
		check(how, q.Stats())
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Drops after the migration add to it, across a reopen.
	q := openTest(t, path, Options{})
	defer q.Close()
	ctx := context.Background()
	if _, err := q.Append(ctx, []Record{{Lane: LaneCounts, Key: "m", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	recs, err := q.Next(1)
	if err != nil || len(recs) != 1 {
		t.Fatal(recs, err)
	}
	if err := q.DeadLetter(ctx, recs[0], "refused"); err != nil {
		t.Fatal(err)
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 {
		t.Fatal(dls, err)
	}
	if err := q.DropDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.DeadDropped != 6 || st.Lanes[LaneCounts].Dropped != 0 {
		t.Fatalf("after a drop: %+v", st)
	}
}

// DeadLetterAs moves records of one key (some in a segment) out as one dead
// letter, all or nothing.
func TestDeadLetterAs(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	ctx := context.Background()
	var batch []Record
	for i := range 300 {
		key := []string{"m1", "m2"}[i%2]
		batch = append(batch, Record{Lane: LaneCounts, Key: key, Data: bytes.Repeat([]byte{'a' + byte(i%26)}, 100)})
	}
	mustAppend(t, q, batch...)
	var m1, m2 []Record
	for _, r := range readAll(t, q, LaneCounts) {
		if r.Key == "m1" {
			m1 = append(m1, r)
		} else {
			m2 = append(m2, r)
		}
	}
	if len(m1) != 150 || len(m2) != 150 {
		t.Fatalf("read %d and %d records", len(m1), len(m2))
	}
	as := Record{Lane: LaneCounts, Key: "m1", Seq: m1[0].Seq, Data: []byte("150 pieces")}
	if err := q.DeadLetterAs(ctx, m1, as, "refused"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, q, LaneCounts); len(got) != 150 || got[0].Key != "m2" {
		t.Fatalf("lane after: %d records, first %+v", len(got), got[0])
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 || string(dls[0].Record.Data) != "150 pieces" || dls[0].Reason != "refused" {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if st := q.Stats(); st.Pending != 150 || st.DeadLetters != 1 {
		t.Fatalf("stats %+v", st)
	}
	// One of them gone (m1's, moved above): nothing moves.
	mixed := append([]Record{m1[0]}, m2...)
	if err := q.DeadLetterAs(ctx, mixed, Record{Lane: LaneCounts, Key: "m2"}, "refused"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("with a record not pending: %v", err)
	}
	if got := readAll(t, q, LaneCounts); len(got) != 150 {
		t.Fatalf("lane after a refused move: %d records", len(got))
	}
	if st := q.Stats(); st.DeadLetters != 1 {
		t.Fatalf("dead letters after a refused move: %d", st.DeadLetters)
	}
}

// TestDamageMetWhileOpen: a record damaged on the disk while the file is
// open (the open sets aside what it finds; this is met later) is set aside
// by the read, the ack or the append that meets it, and the rest goes on.
// It failed every read of its lane, and every ack or commit touching the
// lane's head: forwarding stopped until a restart.
func TestDamageMetWhileOpen(t *testing.T) {
	payload := func(j int) []byte { return fmt.Appendf(nil, "payload-%04d-", j) }
	// spoil writes, at each copy of record j's payload in the live file
	// (bbolt leaves older ones in free pages), what where says for the
	// copy at i (ok false: none).
	spoil := func(t *testing.T, q *Queue, j int, where func(b []byte, i int) (at int64, with []byte, ok bool)) {
		t.Helper()
		b, err := os.ReadFile(q.Path())
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(q.Path(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n := 0
		for off := 0; ; {
			i := bytes.Index(b[off:], payload(j))
			if i < 0 {
				break
			}
			i += off
			off = i + 1
			if at, with, ok := where(b, i); ok {
				if _, err := f.WriteAt(with, at); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
		if n == 0 {
			t.Fatalf("payload %d not found", j)
		}
	}
	// damage spoils record j's stored bytes, or with framing (dataLen: its
	// Data's length) the length in front of it in its segment.
	damage := func(t *testing.T, q *Queue, j int, framing bool, dataLen int) {
		t.Helper()
		spoil(t, q, j, func(b []byte, i int) (int64, []byte, bool) {
			if !framing {
				return int64(i + 12), []byte{'Y'}, true // its checksum fails
			}
			// the length in front of a record of a segment: len(4)
			// version lane sec(8) nsec(4) keylen key datalen(1 or 2) | data
			size := encodedSize(Record{Key: "m", Data: make([]byte, dataLen)})
			at := i - 4 - (size - dataLen - 4 - 8)
			// Only a copy in a segment, its length in front: a stale one
			// at the top of a page may follow another page, in use, and
			// a plain record has its key there.
			return int64(at), []byte{0, 0, 0xff, 0xff}, at >= 0 && binary.BigEndian.Uint32(b[at:]) == uint32(size)
		})
	}
	fill := func(t *testing.T) (*Queue, *syncBuffer) {
		logs := &syncBuffer{}
		q := openTest(t, "", Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		recs := make([]Record, 300)
		for i := range recs {
			recs[i] = Record{Lane: LaneCounts, Key: "m", Data: append(payload(i), strings.Repeat("x", 50)...)}
		}
		mustAppend(t, q, recs...) // one segment
		for i := range 3 {
			mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: payload(300 + i)}) // plain records
		}
		return q, logs
	}
	check := func(t *testing.T, q *Queue, logs *syncBuffer, got []Record, acked int, lost ...int) {
		t.Helper()
		if want := 303 - len(lost); len(got) != want {
			t.Fatalf("read %d records, want %d", len(got), want)
		}
		st := q.Stats()
		if st.DeadLetters != len(lost) || st.Lanes[LaneCounts].Pending != len(got)-acked {
			t.Fatalf("stats = %+v", st)
		}
		dls, err := q.DeadLetters()
		if err != nil {
			t.Fatal(err)
		}
		for k, j := range lost {
			if !dls[k].Damaged || !bytes.Contains(dls[k].Record.Data, payload(j)[:12]) || bytes.Contains(dls[k].Record.Data, payload(j+1)) {
				t.Errorf("dead letter %d = %q (%s)", k, dls[k].Record.Data, dls[k].Reason)
			}
		}
		if !strings.Contains(logs.String(), "damaged records met while running") {
			t.Errorf("not logged:\n%s", logs)
		}
		if err := q.Ack(context.Background(), got[acked:]); err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.Pending != 0 {
			t.Fatalf("after the ack: stats = %+v", st)
		}
		mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("next")})
		if got, err := q.Next(10); err != nil || len(got) != 1 {
			t.Fatalf("next: %d records, %v", len(got), err)
		}
	}
	t.Run("read, a record", func(t *testing.T) {
		q, logs := fill(t)
		damage(t, q, 123, false, 0)
		check(t, q, logs, readAll(t, q, LaneCounts), 0, 123)
	})
	t.Run("read, the framing", func(t *testing.T) {
		q, logs := fill(t)
		damage(t, q, 123, true, 63)
		check(t, q, logs, readAll(t, q, LaneCounts), 0, 123)
	})
	t.Run("next, a plain record", func(t *testing.T) {
		q, logs := fill(t)
		damage(t, q, 301, false, 0)
		got, err := q.Next(1000)
		if err != nil {
			t.Fatal(err)
		}
		check(t, q, logs, got, 0, 301)
	})
	t.Run("ack up to it", func(t *testing.T) {
		// Read before the damage: the ack of the first 100 leaves the
		// damaged record at the lane's head.
		q, logs := fill(t)
		first, err := q.Read(LaneCounts, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		damage(t, q, 100, false, 0)
		if err := q.Ack(context.Background(), first); err != nil {
			t.Fatalf("ack before the damaged record: %v", err)
		}
		check(t, q, logs, append(first, readAll(t, q, LaneCounts)...), 100, 100)
	})
	t.Run("ack of a segment whose last seq was zeroed", func(t *testing.T) {
		// Read, then the last record's Seq is zeroed: the ack still
		// removes what was read — it went by the damaged Seq and removed
		// nothing, and all was read again (the damage review).
		q, logs := fill(t)
		got := readAll(t, q, LaneCounts)
		spoil(t, q, 299, func(_ []byte, i int) (int64, []byte, bool) { return int64(i + 63), make([]byte, 8), true })
		if err := q.Ack(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		if again := readAll(t, q, LaneCounts); len(again) != 0 {
			t.Fatalf("%d records read again after their ack", len(again))
		}
		if st := q.Stats(); st.Pending != 0 || st.DeadLetters != 1 || !strings.Contains(logs.String(), "damaged records met while running") {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("dead letter before the damage", func(t *testing.T) {
		// A record of a segment whose framing broke further on goes to
		// the dead letters (it was not found: every round failed).
		q, _ := fill(t)
		first, err := q.Read(LaneCounts, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		damage(t, q, 200, true, 63)
		if err := q.DeadLetter(context.Background(), first[5], "refused"); err != nil {
			t.Fatalf("dead letter of seq %d: %v", first[5].Seq, err)
		}
		if st := q.Stats(); st.DeadLetters != 2 || st.Lanes[LaneCounts].Pending != 301 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("rekey", func(t *testing.T) {
		// A machine renamed: its records take the new key, those of a
		// damaged segment too (the second damage review: nothing moved,
		// every try failed).
		// Another machine's segment right before the renamed one's
		// plain records: exploded as they are put back.
		q := openTest(t, "", Options{})
		recs := make([]Record, 300)
		for i := range recs {
			recs[i] = Record{Lane: LaneCounts, Key: "x", Data: append(payload(i), strings.Repeat("x", 50)...)}
		}
		mustAppend(t, q, recs...)
		for i := range 3 {
			mustAppend(t, q, Record{Lane: LaneCounts, Key: "p", Data: payload(300 + i)})
		}
		damage(t, q, 123, true, 63)
		moved, left, err := q.Rekey(context.Background(), LaneCounts, "p", "n")
		if err != nil || moved != 3 || left != 0 {
			t.Fatalf("rekey: moved %d, left %d, %v", moved, left, err)
		}
		if st := q.Stats(); st.DeadLetters != 1 || st.Lanes[LaneCounts].Pending != 302 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("two readers at once", func(t *testing.T) {
		q, _ := fill(t)
		damage(t, q, 123, false, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				got, err := q.Read(LaneCounts, 0, 1000)
				if err == nil && len(got) != 302 {
					err = fmt.Errorf("read %d records", len(got))
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("the quota's drop", func(t *testing.T) {
		// Telemetry at the quota, in segments: each append drops the
		// oldest, and the framing of the oldest is damaged. (A plain
		// record that fails its checksum is dropped like the others.)
		logs := &syncBuffer{}
		q := openTest(t, "", Options{MaxBytes: 512 << 10, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		tel := func(i int) Record {
			return Record{Lane: LaneTelemetry, Key: "m", Data: append(payload(i), strings.Repeat("t", 400)...)}
		}
		batch := func(from int) {
			recs := make([]Record, 80) // 36 KB: a segment, and one still after a drop
			for k := range recs {
				recs[k] = tel(from + k)
			}
			mustAppend(t, q, recs...)
		}
		i := 0
		for ; q.Stats().Lanes[LaneTelemetry].Dropped == 0; i += 80 {
			if i > 10_000 {
				t.Fatal("quota never reached")
			}
			batch(i)
		}
		// One in the second segment of the lane, which the next drops
		// reach.
		victim := readAll(t, q, LaneTelemetry)[100]
		j, err := strconv.Atoi(string(victim.Data[8:12]))
		if err != nil {
			t.Fatal(err)
		}
		damage(t, q, j, true, len(victim.Data))
		for k := 0; k < 400; k += 80 {
			batch(i + k)
		}
		if st := q.Stats(); st.DeadLetters != 1 || !strings.Contains(logs.String(), "damaged records met while running") {
			t.Fatalf("stats = %+v\n%s", st, logs)
		}
		if got := readAll(t, q, LaneTelemetry); !bytes.HasPrefix(got[len(got)-1].Data, payload(i+399)) {
			t.Fatalf("last telemetry %q", got[len(got)-1].Data[:13])
		}
	})
}

// A MaxBytes a 32-bit system cannot map is refused at Open, not wrapped
// round (the arch probe).
func TestMaxBytesOnA32BitSystem(t *testing.T) {
	defer func(was int) { intSize = was }(intSize)
	intSize = 32
	path := filepath.Join(t.TempDir(), "buffer.db")
	if q, err := Open(path, Options{MaxBytes: 4 << 30}); err == nil {
		_ = q.Close()
		t.Fatal("4 GiB opened on a 32-bit system")
	}
	q, err := Open(path, Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatalf("1 GiB: %v", err)
	}
	_ = q.Close()
}

// A write transaction that does not return (a frozen disk) shows in
// WriteRunningSince from its start until it ends.
func TestWriteRunningSince(t *testing.T) {
	q := openTest(t, "", Options{})
	if s := q.WriteRunningSince(); !s.IsZero() {
		t.Fatalf("a write running at rest: %v", s)
	}
	in, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	before := time.Now()
	go func() {
		done <- q.submit(t.Context(), &request{fn: func(*txn) error { close(in); <-release; return nil }, nrec: 1})
	}()
	<-in
	if s := q.WriteRunningSince(); s.Before(before) || s.After(time.Now()) {
		t.Errorf("a write held in its transaction: running since %v, want since %v", s, before)
	}
	time.Sleep(300 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The request is answered inside the commit; the committer's work
	// after it (raiseAfterCut, maybeShrink) is still marked a moment:
	// looked at once, at once, it failed about half the runs under -race.
	for deadline := time.Now().Add(2 * time.Second); !q.WriteRunningSince().IsZero() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := q.WriteRunningSince(); !s.IsZero() {
		t.Errorf("the write ended: running since %v, want none", s)
	}
	// The held write is the longest since the last look, however short
	// the ones after it; taken, it is not said again.
	if _, err := q.Append(t.Context(), []Record{{Lane: LaneCounts, Key: "k", Data: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if d := q.TakeLongestWrite(); d < 300*time.Millisecond || d > time.Since(before) {
		t.Errorf("the longest write %v, want the held one's 300 ms or more", d)
	}
	if d := q.TakeLongestWrite(); d >= 300*time.Millisecond {
		t.Errorf("the longest write taken again: %v", d)
	}
}

// A meta value's bytes are the caller's again once the call that wrote it
// returns (the agent encodes each machine's state into buffers of its
// own): what was stored stays as it was written, also after a reopen.
func TestMetaValueNotKeptAfterTheCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	v := []byte("state 1")
	if _, err := q.Append(ctx, []Record{{Lane: LaneCounts, Key: "m1", Data: []byte("x")}}, KV{Key: "machine/m1", Value: v}); err != nil {
		t.Fatal(err)
	}
	copy(v, "XXXXXXX")
	w := []byte("state 2")
	if err := q.PutMeta(ctx, KV{Key: "machine/m2", Value: w}); err != nil {
		t.Fatal(err)
	}
	copy(w, "YYYYYYY")
	for key, want := range map[string]string{"machine/m1": "state 1", "machine/m2": "state 2"} {
		if got, err := q.Meta(key); err != nil || string(got) != want {
			t.Fatalf("Meta(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	for key, want := range map[string]string{"machine/m1": "state 1", "machine/m2": "state 2"} {
		if got, err := q.Meta(key); err != nil || string(got) != want {
			t.Fatalf("after a reopen Meta(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
}

// A retry or drop of many dead letters is one transaction (all or none):
// made one by one, a retry of all stopped between two was left half done.
// Those gone meanwhile are left out, and said so by what is done.
func TestDeadLettersRetriedAndDroppedAsOne(t *testing.T) {
	q := openTest(t, "", Options{})
	ctx := context.Background()
	mustAppend(t, q,
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e1")},
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e2")},
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e3")},
		Record{Lane: LaneEvents, Key: "m1", Data: []byte("e4")},
	)
	for _, r := range readAll(t, q, LaneEvents) {
		if err := q.DeadLetter(ctx, r, "refused"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.DropDeadLetter(ctx, 2); err != nil {
		t.Fatal(err)
	}
	done, err := q.RetryDeadLetters(ctx, []uint64{1, 2, 3})
	if err != nil || !slices.Equal(done, []uint64{1, 3}) {
		t.Fatalf("retried %v, %v; want 1 and 3 (2 was dropped)", done, err)
	}
	if got := readAll(t, q, LaneEvents); len(got) != 2 || string(got[0].Data) != "e1" || string(got[1].Data) != "e3" {
		t.Fatalf("lane after the retry = %+v", got)
	}
	done, err = q.DropDeadLetters(ctx, []uint64{3, 4})
	if err != nil || !slices.Equal(done, []uint64{4}) {
		t.Fatalf("dropped %v, %v; want 4 (3 was retried)", done, err)
	}
	if st := q.Stats(); st.DeadLetters != 0 || st.DeadDropped != 2 || st.Pending != 2 {
		t.Fatalf("stats = %+v", st)
	}
	// Given up on before the committer took it: nothing done.
	if err := q.DeadLetter(ctx, readAll(t, q, LaneEvents)[0], "refused"); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if done, err := q.DropDeadLetters(gone, []uint64{5}); err == nil || done != nil || q.Stats().DeadLetters != 1 {
		t.Fatalf("a drop given up on: %v, %v, %d dead letters", done, err, q.Stats().DeadLetters)
	}
}

// A retry of all of many dead letters empties every leaf page of their
// bucket in one transaction: bbolt's Cursor.Last loops for ever on such a
// bucket (the newest is looked for when it is taken).
func TestManyDeadLettersRetriedAsOne(t *testing.T) {
	q := openTest(t, "", Options{})
	ctx := context.Background()
	const n = 2500
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Lane: LaneEvents, Key: "m1", Data: []byte("e")}
	}
	mustAppend(t, q, recs...)
	ids := make([]uint64, 0, n)
	for _, r := range readAll(t, q, LaneEvents) {
		if err := q.DeadLetter(ctx, r, "refused"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, uint64(len(ids)+1))
	}
	if got, err := q.RetryDeadLetters(ctx, ids); err != nil || len(got) != n {
		t.Fatalf("retried %d, %v; want %d", len(got), err, n)
	}
	if st := q.Stats(); st.DeadLetters != 0 || st.Pending != n {
		t.Fatalf("stats = %+v", st)
	}
	if _, ok, err := q.LatestDeadLetter(); ok || err != nil {
		t.Fatalf("latest dead letter after the retry of all: %v, %v", ok, err)
	}
}
