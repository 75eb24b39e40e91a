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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/fstest"
	"golang.org/x/sys/unix"
)

// A full disk with Odoo away: the buffer keeps to the pages its file has,
// in the quota's order (telemetry dropped, counts merged), so appends go on
// succeeding and no count is lost; once there is room, the budget max_bytes
// gives is back.
func TestDiskFullKeepsToTheFile(t *testing.T) {
	dir := smallTmpfs(t)
	var logs syncBuffer
	const maxBytes = 4 << 20
	q := openTest(t, filepath.Join(dir, "buffer.db"), Options{MaxBytes: maxBytes, Merge: sumCounts,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), fileCheckEvery: 20 * time.Millisecond, diskLowerEvery: time.Second})
	keys := []string{"m0", "m1"}
	appended := make(map[string]uint64)
	var events [][]byte
	round := func(i int) {
		t.Helper()
		recs := []Record{{Lane: LaneEvents, Key: "m0", Data: []byte{byte(i), byte(i >> 8), 'e'}}}
		events = append(events, recs[0].Data)
		for j := range 20 {
			recs = append(recs, countRecord(keys[j%2], uint64(i+j)), Record{Lane: LaneTelemetry, Key: keys[j%2], Data: bytes.Repeat([]byte{'t'}, 200)})
			appended[keys[j%2]] += uint64(i + j)
		}
		mustAppend(t, q, recs...)
	}
	for i := range 150 {
		round(i)
	}
	if st := q.Stats(); st.Dropped != 0 || st.Merged != 0 || st.UsedBytes < diskLowerMinUsed {
		t.Fatalf("before the disk filled: %+v", st)
	}
	// Something else fills the disk.
	filler := filepath.Join(dir, "filler")
	fill := func() { fillFS(t, filler) }
	fill()
	for i := 150; i < 1500; i++ {
		round(i) // every append succeeds
	}
	st := q.Stats()
	if st.DiskFullSince.IsZero() || st.Lanes[LaneTelemetry].Dropped == 0 || st.Lanes[LaneEvents].Dropped != 0 || st.Lanes[LaneCounts].Dropped != 0 {
		t.Fatalf("with the disk full: %+v", st)
	}
	if st.UsedBytes > st.LimitBytes || st.LimitBytes >= budgetFor(maxBytes) {
		t.Fatalf("used %d, limit %d, max_bytes gives %d", st.UsedBytes, st.LimitBytes, budgetFor(maxBytes))
	}
	if !strings.Contains(logs.String(), "DISK FULL") {
		t.Errorf("not logged: %s", logs.String())
	}
	// Room again: the budget max_bytes gives is back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !q.Stats().DiskFullSince.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("the budget stays lowered with room on the disk: %+v", q.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := q.Stats(); st.LimitBytes != budgetFor(q.opts.MaxBytes) {
		t.Fatalf("limit %d after the disk has room, want %d", st.LimitBytes, budgetFor(q.opts.MaxBytes))
	}
	// It fills again: every append still succeeds — in the pages the file
	// has (the quota may hold it there first; a file that must grow is
	// lowered again at once, the budget having been raised since) — and
	// the limit is lowered at most once per diskLowerEvery, however many
	// commits fail.
	for i := 1500; i < 1700; i++ {
		round(i)
	}
	fill()
	began := time.Now()
	for i := 1700; i < 2500; i++ {
		round(i)
	}
	lowerings := strings.Count(logs.String(), "DISK FULL")
	if max := 2 + int(time.Since(began)/time.Second) + 1; lowerings > max {
		t.Errorf("%d lowerings, want at most %d", lowerings, max)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]uint64)
	for _, r := range readAll(t, q, LaneCounts) {
		got[r.Key] += binary.BigEndian.Uint64(r.Data)
	}
	for _, k := range keys {
		if got[k] != appended[k] {
			t.Errorf("key %s holds %d pieces, %d were appended", k, got[k], appended[k])
		}
	}
	evs := readAll(t, q, LaneEvents)
	if len(evs) != len(events) {
		t.Fatalf("%d events kept, %d appended", len(evs), len(events))
	}
	for i, e := range evs {
		if !bytes.Equal(e.Data, events[i]) {
			t.Fatalf("event %d is %q, want %q", i, e.Data, events[i])
		}
	}
}

// A full disk while a read is in progress (a status scan), which holds the
// pages the last commits freed: the delete that would hold the file at its
// size finds no free page. The reserve file kept next to the buffer gives
// it the blocks: removed, the buffer is held to its file and every append
// succeeds; it is back once the disk has room. Without it (an earlier fill
// took it, the disk had no room for it) the try fails, took nothing, and is
// made again soon after (a twelfth of the interval between lowerings), not a
// whole interval later with every append failing meanwhile.
func TestDiskFullWhileAReadHoldsFreedPages(t *testing.T) {
	for _, reserve := range []bool{true, false} {
		t.Run(fmt.Sprintf("reserve=%v", reserve), func(t *testing.T) { diskFullWhileARead(t, reserve) })
	}
}

func diskFullWhileARead(t *testing.T, reserve bool) {
	dir := smallTmpfs(t)
	var logs syncBuffer
	every := 12 * time.Second
	path := filepath.Join(dir, "buffer.db")
	check := 20 * time.Millisecond
	if !reserve {
		check = time.Hour // or the idle committer writes the reserve again
		// The try again comes a twelfth of it later (5 s), the bounds
		// below at half of it: 25 s for a loaded machine, where 12 s left
		// 5 (the reserve's case waits a whole interval for the room).
		every = time.Minute
	}
	q := openTest(t, path, Options{MaxBytes: maxBytesFor(4 << 20), Merge: sumCounts,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), fileCheckEvery: check, diskLowerEvery: every,
		initialMmap: 16 << 20})
	if fi, err := os.Stat(path + ".reserve"); err != nil || fi.Size() != q.reserve {
		t.Fatalf("no reserve file of %d bytes next to the buffer: %v", q.reserve, err)
	}
	if !reserve {
		if err := os.Remove(path + ".reserve"); err != nil {
			t.Fatal(err)
		}
	}
	appendRound := func(i int) error {
		recs := []Record{{Lane: LaneEvents, Key: "m0", Data: []byte{byte(i), byte(i >> 8), 'e'}}}
		for range 20 {
			recs = append(recs, countRecord("m0", 1), Record{Lane: LaneTelemetry, Key: "m0", Data: bytes.Repeat([]byte{'t'}, 200)})
		}
		_, err := q.Append(t.Context(), recs)
		return err
	}
	for i := range 150 {
		if err := appendRound(i); err != nil {
			t.Fatal(err)
		}
	}
	read, err := q.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	readDone := false
	defer func() {
		if !readDone {
			_ = read.Rollback() // or Close would wait for it
		}
	}()
	filler := filepath.Join(dir, "filler")
	fillFS(t, filler)
	i := 150
	if reserve {
		for ; i < 1500; i++ {
			if err := appendRound(i); err != nil {
				t.Fatalf("append %d with the disk full and the reserve there: %v", i, err)
			}
			if !readDone && !q.Stats().DiskFullSince.IsZero() {
				_ = read.Rollback() // held to its file: the read ends (reads are short)
				readDone = true
			}
		}
		st := q.Stats()
		if _, err := os.Stat(path + ".reserve"); !errors.Is(err, os.ErrNotExist) || st.DiskFullSince.IsZero() || st.Lanes[LaneTelemetry].Dropped == 0 {
			t.Fatalf("not held to its file with the reserve removed (%v): %+v", err, st)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(every + 10*time.Second); !q.Stats().DiskFullSince.IsZero(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still held to its file with room on the disk: %+v", q.Stats())
			}
		}
		// Written again by the committer's next file check once the disk
		// has room (a moment after the hold ends; it was seen half written).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			fi, err := os.Stat(path + ".reserve")
			if err == nil && fi.Size() == q.reserve {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the reserve file is not back with room on the disk: %v", err)
			}
		}
		// Deleted by someone: written again while the disk has room.
		if err := os.Remove(path + ".reserve"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if fi, err := os.Stat(path + ".reserve"); err == nil && fi.Size() == q.reserve {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a deleted reserve file is not written again")
			}
		}
		return
	}
	for ; ; i++ {
		if i > 5000 {
			t.Fatal("appends never failed with the disk full and a read in progress")
		}
		if err := appendRound(i); err != nil {
			if !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrQuota) {
				t.Fatalf("append with the disk full: %v, want ErrDiskFull", err)
			}
			break
		}
	}
	if !strings.Contains(logs.String(), "no room could be freed") {
		t.Fatalf("the disk full did not find the file without a free page: %s", logs.String())
	}
	_ = read.Rollback()
	readDone = true
	failed := time.Now()
	for appendRound(i) != nil {
		if time.Since(failed) > every/2 {
			t.Fatalf("appends still fail %v after the read ended: %+v", time.Since(failed).Round(time.Millisecond), q.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The pages the read held are free again (and the file's pages have
	// their blocks: backFile): appends go into them, until the file would
	// have to grow — then it is held at its size (a lowering tried within
	// a twelfth of the interval of the one that freed nothing waits that
	// long).
	for j := 1; q.Stats().DiskFullSince.IsZero(); j++ {
		if time.Since(failed) > every/2 {
			t.Fatalf("the file is not held at its size %v after the read ended: %+v", time.Since(failed).Round(time.Millisecond), q.Stats())
		}
		if err := appendRound(i + j); err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if st := q.Stats(); st.Lanes[LaneTelemetry].Dropped == 0 {
		t.Fatalf("held at its size without dropping telemetry: %+v", st)
	}
}

// smallTmpfs mounts a 16 MiB tmpfs for the test (skipped without root).
func smallTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	fstest.Tmpfs(t, dir, "16m")
	return dir
}

// fillFSBut fills the file system as fillFS does, then gives back free
// bytes of it.
func fillFSBut(t *testing.T, path string, free int64) {
	t.Helper()
	fillFS(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-free); err != nil {
		t.Fatal(err)
	}
}

// fillFS writes the file at path until its file system has no room left.
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		if _, err := f.Write(make([]byte, 4<<10)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// max_bytes larger than the disk: the budget can never climb back to it,
// and the buffer stayed "full" with the disk empty (the disk probe: DISK
// FULL for minutes, an empty buffer, 23.9 of 24 MB free, no reserve for
// the next time). With half the disk free it is not full.
func TestDiskSmallerThanMaxBytesIsNotFullOnceFreed(t *testing.T) {
	dir := smallTmpfs(t)
	q := openTest(t, filepath.Join(dir, "buffer.db"), Options{MaxBytes: 64 << 20, Merge: sumCounts,
		fileCheckEvery: 20 * time.Millisecond, diskLowerEvery: time.Second})
	round := func(i int) {
		t.Helper()
		var recs []Record
		for j := range 20 {
			recs = append(recs, countRecord("m0", uint64(i+j)), Record{Lane: LaneTelemetry, Key: "m0", Data: bytes.Repeat([]byte{'t'}, 200)})
		}
		mustAppend(t, q, recs...)
	}
	for i := range 150 {
		round(i)
	}
	filler := filepath.Join(dir, "filler")
	fillFS(t, filler)
	for i := 150; i < 1000 && q.Stats().DiskFullSince.IsZero(); i++ {
		round(i)
	}
	if q.Stats().DiskFullSince.IsZero() {
		t.Fatal("the disk filled without the buffer noticing")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, l := range []Lane{LaneCounts, LaneTelemetry} {
		if recs := readAll(t, q, l); len(recs) > 0 {
			if err := q.Ack(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !q.Stats().DiskFullSince.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("still held for a full disk with the disk emptied: %+v", q.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !q.reserveThere() {
		fi, err := os.Stat(q.reservePath())
		t.Errorf("no reserve file once the disk has room: %v %v", fi, err)
	}
}

// The file's whole length has disk blocks: bbolt grows it with ftruncate,
// which leaves the stretch past the pages written a hole, and the pages a
// full disk holds the buffer to must be there (the disk probe: an 8.1 MiB
// file with 4 MiB of blocks on a full tmpfs, its acknowledgements failing
// with ENOSPC).
func TestFileIsBackedByBlocks(t *testing.T) {
	dir := smallTmpfs(t)
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{MaxBytes: 8 << 20})
	backed := func() (size, blocks int64) {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Size, st.Blocks * 512
	}
	for i := 0; ; i++ {
		mustAppend(t, q, Record{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{byte(i)}, 2000)})
		if size, _ := backed(); size >= 2<<20 {
			break
		}
		if i > 10000 {
			t.Fatal("the file does not grow")
		}
	}
	if size, blocks := backed(); blocks < size {
		t.Errorf("file of %d bytes has %d bytes of blocks", size, blocks)
	}
}

// backFile leaves the disk backMargin free: it takes only what the disk can
// spare, tries again when there is room, and not at every commit (the
// review: on ext4 a fallocate that failed part-way kept what it took, and
// the disk went to 0 bytes free with the buffer holding 2 MiB).
func TestBackingLeavesTheDiskRoom(t *testing.T) {
	dir := smallTmpfs(t)
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{MaxBytes: 8 << 20, fileCheckEvery: time.Hour})
	mustAppend(t, q, Record{Lane: LaneEvents, Key: "m0", Data: []byte("x")})
	blocks := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	// The disk nearly full, then the file grown as bbolt grows it.
	filler := filepath.Join(dir, "filler")
	fillFS(t, filler)
	if err := os.Truncate(filler, 0); err != nil {
		t.Fatal(err)
	}
	avail, _ := freeBytes(dir)
	if err := os.Truncate(filler, avail-backMargin-(1<<20)); err != nil { // sparse: take the blocks
		t.Fatal(err)
	}
	f, err := os.OpenFile(filler, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, avail-backMargin-(1<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := blocks()
	if err := os.Truncate(path, 6<<20); err != nil {
		t.Fatal(err)
	}
	q.backFile()
	if got, _ := freeBytes(dir); got < backMargin {
		t.Errorf("%d bytes free after backing, want at least %d", got, backMargin)
	}
	if b := blocks(); b <= before || b >= 6<<20 {
		t.Errorf("blocks %d (before %d): want what the disk can spare, not the whole file", b, before)
	}
	// With room again, the rest — when a file check is due.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	q.backFile()
	if b := blocks(); b >= 6<<20 {
		t.Errorf("backed again before a file check was due")
	}
	q.backTriedAt = time.Time{}
	q.backFile()
	if b := blocks(); b < 6<<20 {
		t.Errorf("blocks %d of a %d-byte file with room on the disk", b, 6<<20)
	}
}

// A small buffer (under diskLowerMinUsed: never held to its file) on a disk
// something else filled, its appends failing (backpressure) and taking the
// disk's last bytes, then Odoo back: the acknowledgements, which carry state
// with them as the agent's do (work orders, bookings kept for rebook), need
// pages the file does not have. The audit saw them fail with ENOSPC round
// after round, 764 records pending with Odoo online and the 1 MiB reserve
// unused next to the file. They get the reserve's blocks; appends do not
// grow the file into that room meanwhile (they go into the pages the file
// has, or fail with ErrDiskFull), and the reserve is back once there is room.
func TestDiskFullAcksUseTheReserve(t *testing.T) {
	dir := smallTmpfs(t)
	var logs syncBuffer
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{MaxBytes: 4 << 20, Merge: sumCounts,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), fileCheckEvery: 20 * time.Millisecond, diskLowerEvery: time.Second})
	for i := range 20 {
		mustAppend(t, q, event(i)...)
	}
	// Something else fills the disk to 150 KiB free.
	filler := filepath.Join(dir, "filler")
	fillFSBut(t, filler, 150<<10)
	appended := 20 + appendUntilFailing(t, q, 20)
	if st := q.Stats(); st.UsedBytes >= diskLowerMinUsed || !st.DiskFullSince.IsZero() || !q.reserveThere() {
		t.Fatalf("not the small buffer with its reserve: %+v", st)
	}
	// Odoo takes everything: every acknowledgement is written.
	if acked := ackAllWithBookings(t, q); acked != appended {
		t.Fatalf("%d acknowledged, %d appended", acked, appended)
	}
	st := q.Stats()
	if st.ReserveLentSince.IsZero() || q.reserveThere() || st.Lanes[LaneEvents].Dropped != 0 {
		t.Fatalf("the reserve is not shown given up: %+v", st)
	}
	if n := strings.Count(logs.String(), "removed the buffer's reserve file so that acknowledgements"); n != 1 {
		t.Errorf("giving up the reserve logged %d times, want once: %s", n, logs.String())
	}
	// The appends that follow go into the pages the acknowledgements
	// freed, then fail: they do not take the reserve's room.
	free, _ := freeBytes(dir)
	ok, i := 0, 30000
	for ; ; i++ {
		if _, err := q.Append(t.Context(), event(i)); err != nil {
			if !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrQuota) {
				t.Fatalf("append with the reserve given up: %v, want ErrDiskFull", err)
			}
			break
		}
		if ok++; ok > 20000 {
			t.Fatal("appends never failed with the reserve given up")
		}
	}
	if ok == 0 {
		t.Error("no append went into the pages the acknowledgements freed")
	}
	if now, _ := freeBytes(dir); now < free {
		t.Errorf("appends took %d bytes of the disk with the reserve given up (%d free before)", free-now, free)
	}
	// Room again: the reserve is back, and appends grow the file again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !q.reserveThere() || !q.Stats().ReserveLentSince.IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reserve is not back with room on the disk: %+v", q.Stats())
		}
	}
	if !strings.Contains(logs.String(), "reserve file is back") {
		t.Errorf("its return is not logged: %s", logs.String())
	}
	for j := range 500 {
		mustAppend(t, q, event(i+j)...)
	}
	if got := len(readAll(t, q, LaneEvents)); got != ok+500 {
		t.Errorf("%d events pending, %d appended", got, ok+500)
	}
}

// ackAllWithBookings reads the events lane and acknowledges it a hundred
// records at a time with a booking kept for each, as the agent's
// forwarder does (its acknowledgements write the work orders' states and
// the bookings kept for rebook: they need pages as well as free them),
// until the lane is empty; it returns how many it acknowledged.
func ackAllWithBookings(t *testing.T, q *Queue) int {
	t.Helper()
	acked := 0
	for round := 0; ; round++ {
		recs, err := q.Read(LaneEvents, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return acked
		}
		var meta []KV
		for j, r := range recs {
			meta = append(meta, KV{Key: fmt.Sprintf("booked/%d/%d", round, j), Value: bytes.Repeat([]byte{byte(r.Seq)}, 150)})
		}
		if err := q.Ack(t.Context(), recs, meta...); err != nil {
			t.Fatalf("acknowledgement %d with the disk full (%d records pending): %v", round, q.Stats().Pending, err)
		}
		acked += len(recs)
	}
}

// appendUntilFailing appends event(from), event(from+1) … to q on a full
// disk until 100 appends have failed with ErrDiskFull, and returns how
// many succeeded before the first failure.
func appendUntilFailing(t *testing.T, q *Queue, from int) int {
	t.Helper()
	appended, failed := 0, 0
	for i := from; failed < 100; i++ {
		if _, err := q.Append(t.Context(), event(i)); err != nil {
			if !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrQuota) {
				t.Fatalf("append %d with the disk full: %v, want ErrDiskFull", i, err)
			}
			failed++
		} else if failed == 0 {
			appended++
		}
		if i > from+20000 {
			t.Fatal("appends never failed with the disk full")
		}
	}
	return appended
}

// startOnAFullDisk appends n events of 300 bytes (event) to a buffer on a
// small tmpfs, stops it with its reserve given up, fills the disk to
// 150 KiB free (less than the reserve) with the file filler, and starts
// the buffer again.
func startOnAFullDisk(t *testing.T, n int, log *slog.Logger) (q *Queue, dir, filler string) {
	t.Helper()
	dir = smallTmpfs(t)
	path := filepath.Join(dir, "buffer.db")
	opts := Options{MaxBytes: 4 << 20, Merge: sumCounts, Logger: log, fileCheckEvery: 20 * time.Millisecond, diskLowerEvery: time.Second}
	q = openTest(t, path, opts)
	for i := range n {
		mustAppend(t, q, event(i)...)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(q.reservePath()); err != nil {
		t.Fatal(err)
	}
	filler = filepath.Join(dir, "filler")
	fillFSBut(t, filler, 150<<10)
	return openTest(t, path, opts), dir, filler
}

// event is the i-th of the disk-full tests' events: 300 bytes of m0.
func event(i int) []Record {
	return []Record{{Lane: LaneEvents, Key: "m0", Data: bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 150)}}
}

// A start on a full disk with no room for the reserve file (the last run
// lent it, or the disk filled while plantedge was stopped) must leave the
// acknowledgements the room there is: appends may not grow the file until
// the reserve is back, as when it is lent (lendReserve). Otherwise the
// appends took the disk's last bytes and, with no reserve to give, every
// acknowledgement failed: a small buffer's backlog stayed pending with
// Odoo online until someone freed the disk (the disk-full probe's note).
func TestDiskFullAtOpenKeepsTheRoomForAcknowledgements(t *testing.T) {
	var logs syncBuffer
	q, dir, filler := startOnAFullDisk(t, 200, slog.New(slog.NewTextHandler(&logs, nil)))
	if q.reserveThere() || q.Stats().ReserveLentSince.IsZero() {
		t.Fatalf("started on a full disk without its reserve, not shown given up: %+v", q.Stats())
	}
	if !strings.Contains(logs.String(), "could not write the buffer's reserve file") {
		t.Errorf("not logged: %s", logs.String())
	}
	// The sources send on; the appends fill the pages the file has, not
	// the disk.
	free, _ := freeBytes(dir)
	appended := 200 + appendUntilFailing(t, q, 200)
	if now, _ := freeBytes(dir); now < free {
		t.Errorf("appends took %d bytes of the disk with no reserve (%d free before)", free-now, free)
	}
	// Odoo takes everything: every acknowledgement is written.
	if acked := ackAllWithBookings(t, q); acked != appended {
		t.Fatalf("%d acknowledged, %d appended", acked, appended)
	}
	// Room again: the reserve is back, appends grow the file again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !q.reserveThere() || !q.Stats().ReserveLentSince.IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reserve is not back with room on the disk: %+v", q.Stats())
		}
	}
	for j := range 2000 {
		mustAppend(t, q, event(30000+j)...)
	}
}

// A larger buffer started on a full disk without its reserve is not held
// back so: the first append the disk refuses holds it to its file (the
// quota's order: here the oldest events dropped), which frees pages for
// the acknowledgements, and the room the disk had is used first.
func TestDiskFullAtOpenOfALargerBufferHoldsItToItsFile(t *testing.T) {
	q, dir, _ := startOnAFullDisk(t, 3000, nil)
	if st := q.Stats(); st.UsedBytes < diskLowerMinUsed || !st.ReserveLentSince.IsZero() {
		t.Fatalf("not a larger buffer, or held back at the start: %+v", st)
	}
	for i := 3000; i < 6000; i++ {
		mustAppend(t, q, event(i)...)
	}
	st := q.Stats()
	if st.DiskFullSince.IsZero() || st.Dropped == 0 {
		t.Fatalf("not held to its file for the full disk: %+v", st)
	}
	if free, _ := freeBytes(dir); free >= 150<<10 {
		t.Errorf("the room the disk had (%d bytes free) was not used", free)
	}
	if acked := ackAllWithBookings(t, q); acked != st.Pending {
		t.Errorf("%d acknowledged, %d pending", acked, st.Pending)
	}
}

// maxBytesFor is the MaxBytes that leaves the file a quota of file bytes
// once its reserve file is counted (reserveFor): the tests sized for a file
// of that quota keep their sizes.
func maxBytesFor(file int64) int64 {
	m := file
	for m-reserveFor(m) != file {
		m++
	}
	return m
}

// The reserve file counts within MaxBytes (the spec audit: max_bytes 1MiB,
// 1.7 MB in data_dir): an eighth of a small quota, 1 MiB from 8 MiB on;
// the file and its reserve stay within MaxBytes when full.
func TestReserveCountsWithinMaxBytes(t *testing.T) {
	for _, c := range []struct{ max, reserve int64 }{{0, diskReserve}, {256 << 10, 32 << 10}, {1 << 20, 128 << 10}, {8 << 20, 1 << 20}, {1 << 30, 1 << 20}} {
		if got := reserveFor(c.max); got != c.reserve {
			t.Errorf("reserveFor(%d) = %d, want %d", c.max, got, c.reserve)
		}
	}
	const max = 1 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{MaxBytes: max, Merge: sumCounts})
	for i := range 3000 {
		recs := []Record{{Lane: LaneEvents, Key: fmt.Sprint("m", i%7), Data: bytes.Repeat([]byte{'e'}, 150)}, countRecord("m0", 1)}
		if _, err := q.Append(t.Context(), recs); err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	}
	if q.Stats().Dropped == 0 {
		t.Fatal("the quota was never reached")
	}
	var total int64
	for _, name := range []string{"buffer.db", "buffer.db.reserve"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	if total > max {
		t.Errorf("the file and its reserve take %d bytes, over max_bytes %d", total, max)
	}
}

// A reserve lent for acknowledgements must come back once the disk has room
// for it, also after a lowering for the full disk: while it is lent, appends
// may not grow the file, and one that needed to takes another tenth of the
// buffer (lowerBudgetForDisk) with the disk no longer full.
func TestLentReserveComesBackAfterALowering(t *testing.T) {
	dir := smallTmpfs(t)
	var logs syncBuffer
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{Merge: sumCounts,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), fileCheckEvery: 20 * time.Millisecond, diskLowerEvery: 200 * time.Millisecond})
	i := 0
	for ; i < 2000; i++ {
		mustAppend(t, q, event(i)...)
	}
	filler := filepath.Join(dir, "filler")
	fillFS(t, filler)
	// An acknowledgement failed alone for the full disk: the reserve is lent.
	if !q.lendReserve() {
		t.Fatal("no reserve to lend")
	}
	for ; ; i++ {
		_, err := q.Append(t.Context(), event(i))
		if err != nil && !errors.Is(err, ErrDiskFull) {
			t.Fatal(err)
		}
		if !q.DiskFullSince().IsZero() {
			break
		}
		if i > 100000 {
			t.Fatal("no lowering")
		}
	}
	// The operator frees 5 MiB: room for the reserve four times over.
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler, fi.Size()-5<<20); err != nil {
		t.Fatal(err)
	}
	dropped := q.Stats().Dropped
	// A few appends meanwhile, as sources keep sending.
	for deadline := time.Now().Add(5 * time.Second); !q.reserveThere() || !q.Stats().ReserveLentSince.IsZero(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the reserve is still lent with 5 MiB free on the disk (%d more records dropped meanwhile): %+v", q.Stats().Dropped-dropped, q.Stats())
		}
		_, _ = q.Append(t.Context(), event(i))
		time.Sleep(20 * time.Millisecond)
	}
	// Once the budget is raised for the room (checkDiskRoom), appends grow
	// the file into it: nothing more is dropped.
	for deadline := time.Now().Add(5 * time.Second); q.Stats().LimitBytes < q.Stats().UsedBytes+200<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the budget is not raised with 5 MiB free: %+v", q.Stats())
		}
	}
	dropped = q.Stats().Dropped
	for j := range 300 {
		mustAppend(t, q, event(i+j)...)
	}
	if st := q.Stats(); st.Dropped != dropped {
		t.Errorf("%d more records dropped for a full disk with 5 MiB free", st.Dropped-dropped)
	}
}

// An append refused growth while the reserve is lent (errNoGrowth) looks
// for room for the reserve before it lowers the budget for a full disk:
// the disk may have had room again for up to a file check's interval, and
// a lowering then dropped a tenth of the buffer with the disk not full.
func TestNoGrowthLooksForRoomBeforeLowering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{Merge: sumCounts, fileCheckEvery: time.Hour})
	if avail, ok := freeBytes(filepath.Dir(path)); !ok || avail < 64<<20 {
		t.Skip("needs a disk with room")
	}
	i := 0
	for ; i < 2000; i++ {
		mustAppend(t, q, event(i)...)
	}
	// The reserve was lent on a full disk that has room again.
	if !q.lendReserve() {
		t.Fatal("no reserve to lend")
	}
	for j := range 3000 {
		mustAppend(t, q, event(i+j)...)
	}
	if st := q.Stats(); st.Dropped != 0 || !st.DiskFullSince.IsZero() || !st.ReserveLentSince.IsZero() || !q.reserveThere() {
		t.Errorf("appends needing growth with room on the disk: %+v", st)
	}
}

// A reserve lent for acknowledgements that someone puts back whole (or a
// restore copies back) ends the lending: appends may grow the file again
// (the review: the lent state was never cleared so).
func TestLentReservePutBackEndsTheLending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{fileCheckEvery: 20 * time.Millisecond})
	raw, err := os.ReadFile(q.reservePath())
	if err != nil {
		t.Fatal(err)
	}
	if !q.lendReserve() || q.ReserveLentSince().IsZero() {
		t.Fatal("the reserve was not lent")
	}
	if err := os.WriteFile(q.reservePath(), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !q.ReserveLentSince().IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reserve is back whole and still taken for lent")
		}
	}
}
