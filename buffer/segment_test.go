package buffer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestEverythingInSegments runs the queue's tests again with every commit's
// records stored as segments (openTest lowers the threshold to one byte for
// tests under this one), so that acks, dead letters, retries, quota drops and
// merges meet segments, partial segments and exploded ones.
func TestEverythingInSegments(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"AppendReadAckReopen", TestAppendReadAckReopen},
		{"LanePriority", TestLanePriority},
		{"ConcurrentAppenders", TestConcurrentAppenders},
		{"Meta", TestMeta},
		{"DeadLetterRoundTrip", TestDeadLetterRoundTrip},
		{"ReadOnly", TestReadOnly},
		{"DamagedRecordDeadLettered", TestDamagedRecordDeadLettered},
		{"QuotaDropsTelemetryMergesCountsDropsEventsLast", TestQuotaDropsTelemetryMergesCountsDropsEventsLast},
		{"QuotaWithoutMergeReturnsErrFull", TestQuotaWithoutMergeReturnsErrFull},
		{"MergeSkipsHandedOutRecords", TestMergeSkipsHandedOutRecords},
		{"FillDrainKeepsFileFlat", TestFillDrainKeepsFileFlat},
		{"Compact", TestCompact},
		{"MaxSizeBackstop", TestMaxSizeBackstop},
		{"ConcurrentMergeAndAck", TestConcurrentMergeAndAck},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// TestSegmentsAgainstModel drives a queue with a low segment threshold (so
// lanes hold plain records, whole segments, rewritten partial segments and
// exploded ones side by side) through random appends (some concurrent, so
// several requests share a transaction), partial acks, dead letters,
// retries, reads from random positions and reopens, and compares every read
// with a plain in-memory model.
func TestSegmentsAgainstModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { segmentModelRun(t, seed) })
	}
}

func segmentModelRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	path := filepath.Join(t.TempDir(), "buffer.db")
	opts := Options{CommitWindow: time.Millisecond, segmentMinBytes: 600}
	q := openTest(t, path, opts)
	var model [NumLanes][]Record // pending, in Seq order
	dead := map[uint64]Record{}  // by Seq
	var lastSeq uint64           // the last Seq the queue handed out
	ctx := context.Background()

	insert := func(r Record) {
		l := model[r.Lane]
		i, _ := slices.BinarySearchFunc(l, r.Seq, func(a Record, s uint64) int { return cmp.Compare(a.Seq, s) })
		model[r.Lane] = slices.Insert(l, i, r)
	}
	newRecs := func() []Record {
		recs := make([]Record, 1+rng.IntN(60))
		for i := range recs {
			recs[i] = Record{Lane: Lane(rng.IntN(NumLanes)), Key: fmt.Sprint("m", rng.IntN(5)),
				Time: time.Unix(1_700_000_000+rng.Int64N(1000), 0).UTC(), Data: bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, 5+rng.IntN(120))}
		}
		return recs
	}
	appendAll := func(batches [][]Record) {
		seqs := make([][]uint64, len(batches))
		var wg sync.WaitGroup
		for i, b := range batches {
			wg.Go(func() {
				s, err := q.Append(ctx, b)
				if err != nil {
					t.Error(err)
				}
				seqs[i] = s
			})
		}
		wg.Wait()
		for i, b := range batches {
			for j, r := range b {
				r.Seq = seqs[i][j]
				lastSeq = max(lastSeq, r.Seq)
				insert(r)
			}
		}
	}
	check := func(step int) {
		t.Helper()
		st := q.Stats()
		for l := range Lane(NumLanes) {
			want := model[l]
			if st.Lanes[l].Pending != len(want) {
				t.Fatalf("step %d: %s pending %d, model %d", step, l, st.Lanes[l].Pending, len(want))
			}
			var bytesWant int64
			for _, r := range want {
				bytesWant += int64(encodedSize(r) + elemOverhead)
			}
			if st.Lanes[l].Bytes != bytesWant {
				t.Fatalf("step %d: %s bytes %d, model %d", step, l, st.Lanes[l].Bytes, bytesWant)
			}
			if len(want) > 0 && !st.Lanes[l].Oldest.Equal(want[0].Time) {
				t.Fatalf("step %d: %s oldest %v, model %v", step, l, st.Lanes[l].Oldest, want[0].Time)
			}
			// Read from a random position with a random limit.
			after := uint64(0)
			if len(want) > 0 && rng.IntN(2) == 0 {
				after = want[rng.IntN(len(want))].Seq - uint64(rng.IntN(2))
			}
			limit := 1 + rng.IntN(200)
			got, err := q.Peek(l, after, limit)
			if err != nil {
				t.Fatalf("step %d: peek: %v", step, err)
			}
			i, _ := slices.BinarySearchFunc(want, after+1, func(a Record, s uint64) int { return cmp.Compare(a.Seq, s) })
			exp := want[i:min(len(want), i+limit)]
			if len(got) != len(exp) {
				t.Fatalf("step %d: %s after %d limit %d: %d records, model %d", step, l, after, limit, len(got), len(exp))
			}
			for k := range got {
				g, e := got[k], exp[k]
				if g.Seq != e.Seq || g.Key != e.Key || !bytes.Equal(g.Data, e.Data) || !g.Time.Equal(e.Time) || g.Lane != l {
					t.Fatalf("step %d: %s record %d = %+v, model %+v", step, l, k, g, e)
				}
			}
		}
		if st.DeadLetters != len(dead) {
			t.Fatalf("step %d: %d dead letters, model %d", step, st.DeadLetters, len(dead))
		}
	}
	pick := func() (Record, bool) {
		l := Lane(rng.IntN(NumLanes))
		if len(model[l]) == 0 {
			return Record{}, false
		}
		return model[l][rng.IntN(len(model[l]))], true
	}
	for step := range 300 {
		switch op := rng.IntN(20); {
		case op < 6:
			appendAll([][]Record{newRecs()})
		case op < 8:
			appendAll([][]Record{newRecs(), newRecs(), newRecs(), newRecs()})
		case op < 12: // ack a random subset, or a prefix, of a lane
			l := Lane(rng.IntN(NumLanes))
			var acked, kept []Record
			prefix := rng.IntN(len(model[l]) + 1)
			for i, r := range model[l] {
				if (rng.IntN(3) == 0) || (op == 11 && i < prefix) {
					acked = append(acked, r)
				} else {
					kept = append(kept, r)
				}
			}
			if err := q.Ack(ctx, acked); err != nil {
				t.Fatal(err)
			}
			model[l] = kept
		case op < 14:
			r, ok := pick()
			if !ok {
				continue
			}
			if err := q.DeadLetter(ctx, r, "model"); err != nil {
				t.Fatal(err)
			}
			l := model[r.Lane]
			model[r.Lane] = slices.DeleteFunc(l, func(x Record) bool { return x.Seq == r.Seq })
			dead[r.Seq] = r
		case op < 16:
			dls, err := q.DeadLetters()
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) == 0 {
				continue
			}
			d := dls[rng.IntN(len(dls))]
			if err := q.RetryDeadLetter(ctx, d.ID); err != nil {
				t.Fatal(err)
			}
			r := dead[d.Record.Seq]
			delete(dead, d.Record.Seq)
			if r.Lane == LaneCounts { // comes back as the newest
				lastSeq++
				r.Seq = lastSeq
			}
			insert(r)
		case op < 17:
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = openTest(t, path, opts)
		}
		check(step)
	}
	// The run must have met both forms.
	var segs, plain int
	if err := q.view(func(tx *bolt.Tx) error {
		for l := range Lane(NumLanes) {
			_ = tx.Bucket(bucketLanes[l]).ForEach(func(k, v []byte) error {
				if v == nil {
					segs++
				} else {
					plain++
				}
				return nil
			})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("final: %d segments, %d plain records, %d dead letters", segs, plain, len(dead))
	if segs == 0 || plain == 0 {
		t.Fatalf("the run met %d segments and %d plain records; want both", segs, plain)
	}
}

// TestSegmentFramingDamaged breaks the length in front of records of a
// segment. The records past a break are found again (each has its Seq and
// checksum): only the damaged ones go to the dead letters, as raw bytes
// (nothing is silently lost), and the file stays in use. The bitrot probes
// saw all 400 of a segment go for a break in the middle, then the 266 after
// it.
func TestSegmentFramingDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken []int    // indexes of the records whose length is damaged
		dls    []string // each dead letter's payloads, and the seqs it names
		reason []string
	}{
		{"one in the middle", []int{123}, []string{"0123"}, nil},
		{"two in a row", []int{123, 124}, []string{"0123 0124"}, []string{"after seq 123 and before 126"}},
		{"two apart", []int{10, 200}, []string{"0010", "0200"}, nil},
		{"the first", []int{0}, []string{"0000"}, nil},
		{"the last", []int{299}, []string{"0299"}, nil},
		{"three, one of them first", []int{0, 1, 150}, []string{"0000 0001", "0150"}, []string{"after seq 0 and before 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			q := openTest(t, path, Options{})
			recs, b, _ := damageFixture(t, q, Record{Lane: LaneEvents, Key: "m", Data: []byte("event")})
			broken := map[int]bool{}
			for _, j := range tc.broken {
				broken[j] = true
				i := bytes.Index(b, fmt.Appendf(nil, "payload-%04d-", j))
				// len(4) version lane sec(8) nsec(4) keylen key datalen | data
				lenAt := i - (1 + 1 + 1 + 4 + 8 + 1 + 1 + 4)
				if n := binary.BigEndian.Uint32(b[lenAt:]); n != uint32(encodedSize(recs[j])) {
					t.Fatalf("length prefix at %d reads %d, want %d", lenAt, n, encodedSize(recs[j]))
				}
				binary.BigEndian.PutUint32(b[lenAt:], 0xffff)
			}
			q, logs := reopenDamaged(t, path, b)
			kept := 300 - len(tc.broken)
			st := q.Stats()
			if st.Lanes[LaneCounts].Pending != kept || st.Lanes[LaneEvents].Pending != 1 || st.DeadLetters != len(tc.dls) {
				t.Fatalf("stats = %+v", st)
			}
			got := readAll(t, q, LaneCounts)
			var want []string
			for j := range 300 {
				if !broken[j] {
					want = append(want, fmt.Sprintf("%d payload-%04d-", j+1, j))
				}
			}
			if len(got) != len(want) {
				t.Fatalf("read %d records, want %d", len(got), len(want))
			}
			for k, r := range got {
				if s := fmt.Sprintf("%d %s", r.Seq, r.Data[:13]); s != want[k] {
					t.Fatalf("record %d = %q, want %q", k, s, want[k])
				}
			}
			dls, err := q.DeadLetters()
			if err != nil || len(dls) != len(tc.dls) {
				t.Fatalf("dead letters = %d, %v", len(dls), err)
			}
			for k, d := range dls {
				if !d.Damaged || !strings.Contains(d.Reason, "segment") {
					t.Errorf("dead letter %d: reason %q", k, d.Reason)
				}
				in := strings.Fields(tc.dls[k])
				for j := range 300 {
					p := fmt.Sprintf("%04d", j)
					if has := bytes.Contains(d.Record.Data, []byte("payload-"+p+"-")); has != slices.Contains(in, p) {
						t.Errorf("dead letter %d holds payload %s: %v", k, p, has)
					}
				}
				if k < len(tc.reason) && !strings.Contains(d.Reason, tc.reason[k]) {
					t.Errorf("dead letter %d: reason %q, want it to name %q", k, d.Reason, tc.reason[k])
				}
			}
			if !strings.Contains(logs.String(), "level=ERROR") {
				t.Fatalf("damaged segment not logged: %s", logs.String())
			}
			if s := mustAppend(t, q, Record{Lane: LaneCounts}); s[0] != 302 {
				t.Fatalf("next seq = %d", s[0])
			}
			// Set aside for good: a reopen finds nothing more, and every
			// record read is acknowledged.
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = openTest(t, path, Options{})
			if st := q.Stats(); st.DeadLetters != len(tc.dls) || st.Lanes[LaneCounts].Pending != kept+1 {
				t.Fatalf("after a reopen: stats = %+v", st)
			}
			if err := q.Ack(context.Background(), readAll(t, q, LaneCounts)); err != nil {
				t.Fatal(err)
			}
			if st := q.Stats(); st.Lanes[LaneCounts].Pending != 0 {
				t.Fatalf("after the ack: stats = %+v", st)
			}
		})
	}
}

// TestSegmentTailZeroed: a segment's last record with its tail zeroed (an
// erased flash page) reads Seq 0. It is dead-lettered at the open like any
// damaged record, and the other 299 are read and acknowledged once — the
// bitrot probe saw the damaged record skipped by every walk, left in place,
// and the segment's acks remove nothing: the same pieces booked each round.
func TestSegmentTailZeroed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	_, b, _ := damageFixture(t, q)
	i := bytes.Index(b, []byte("payload-0299-"))
	if i < 0 {
		t.Fatal("last payload not found")
	}
	// Data (63 bytes), then seq(8) and crc(4): zero from the data's middle.
	clear(b[i+30 : i+63+12])
	q, logs := reopenDamaged(t, path, b)
	if st := q.Stats(); st.Pending != 299 || st.DeadLetters != 1 {
		t.Fatalf("stats = %+v\n%s", st, logs)
	}
	got := readAll(t, q, LaneCounts)
	if len(got) != 299 || got[len(got)-1].Seq != 299 {
		t.Fatalf("read %d records", len(got))
	}
	if err := q.Ack(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if left := readAll(t, q, LaneCounts); len(left) != 0 || q.Stats().Pending != 0 {
		t.Fatalf("after the ack %d records are read again (pending %d)", len(left), q.Stats().Pending)
	}
}

// TestNewerFormatRefused: a file marked with a newer layout is refused with
// a clear error and left in place, never quarantined as corrupt.
func TestNewerFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("x")})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := func() uint64 {
		var f uint64
		_ = db.View(func(tx *bolt.Tx) error { f = getUint64(tx.Bucket(bucketSys), sysFormat); return nil })
		return f
	}(); got != fileFormat {
		t.Fatalf("format in file = %d, want %d", got, fileFormat)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return putUint64(tx.Bucket(bucketSys), sysFormat, fileFormat+1) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: ro})
		if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "plantedge flush") {
			t.Fatalf("read-only %v: open = %v, want ErrNewerFormat with advice", ro, err)
		}
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("a newer file was quarantined: %v", m)
	}
}

// FuzzSegmentScan damages a segment value anywhere: segmentScan never
// panics, its records are sound and in Seq order, and they and the damaged
// spans account for every byte of it, in order — what it does not read
// back goes to the dead letters.
func FuzzSegmentScan(f *testing.F) {
	var recs [][]byte
	for i := range 20 {
		recs = append(recs, encodeRecord(nil, Record{Seq: uint64(i + 1), Lane: LaneCounts, Key: "m", Data: fmt.Appendf(nil, "payload-%04d", i)}))
	}
	blob := segmentBlob(nil, recs)
	f.Add(uint16(0), []byte{0xff, 0xff})
	f.Add(uint16(300), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(len(blob)-3), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, at uint16, with []byte) {
		b := bytes.Clone(blob)
		if int(at) < len(b) {
			copy(b[at:], with)
		} else {
			b = append(b, with...)
		}
		got, spans := segmentScan(b, 1)
		off, si := 0, 0
		for i := 0; i <= len(got); i++ {
			for si < len(spans) && spans[si].at == i {
				if len(spans[si].v) > 0 && &spans[si].v[0] != &b[off] || spans[si].err == nil {
					t.Fatalf("span %d not at offset %d", si, off)
				}
				off += len(spans[si].v)
				si++
			}
			if i == len(got) {
				break
			}
			if &got[i][0] != &b[off+4] {
				t.Fatalf("record %d not at offset %d", i, off+4)
			}
			// Only sound records, in Seq order from the key on.
			if r, err := decodeRecord(got[i]); err != nil || r.Seq < 1 || i > 0 && r.Seq <= storedSeq(got[i-1]) {
				t.Fatalf("record %d at offset %d: seq %d, %v", i, off+4, r.Seq, err)
			}
			off += 4 + len(got[i])
		}
		if off != len(b) || si != len(spans) {
			t.Fatalf("accounted for %d of %d bytes, %d of %d spans", off, len(b), si, len(spans))
		}
		if len(got) == 0 && len(spans) == 0 {
			t.Fatal("nothing found in a segment")
		}
	})
}

// TestSegmentBitFlips flips, one at a time, every bit of record 124's length
// prefix, of its stored Seq and of its version byte, and a bit of its data:
// each time exactly that record goes to the dead letters, under its own
// Seq, and the file's next sequence number is untouched. The damage review
// saw a plausible wrong length or a Seq one higher condemn the 176 sound
// records after it, and damaged bytes set the next sequence number.
func TestSegmentBitFlips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	recs, clean, _ := damageFixture(t, q)
	i := bytes.Index(clean, []byte("payload-0123-"))
	size := encodedSize(recs[123])
	lenAt := i - (size - len(recs[123].Data) - 4 - 8) - 4
	if n := binary.BigEndian.Uint32(clean[lenAt:]); n != uint32(size) {
		t.Fatalf("length prefix reads %d, want %d", n, size)
	}
	seqAt := i + len(recs[123].Data)
	type flip struct {
		name string
		at   int
		bit  byte
	}
	var flips []flip
	for k := range 32 {
		flips = append(flips, flip{fmt.Sprintf("length bit %d", k), lenAt + 3 - k/8, 1 << (k % 8)})
	}
	for k := range 64 {
		flips = append(flips, flip{fmt.Sprintf("seq bit %d", k), seqAt + 7 - k/8, 1 << (k % 8)})
	}
	for k := range 8 {
		flips = append(flips, flip{fmt.Sprintf("version bit %d", k), lenAt + 4, 1 << k})
	}
	flips = append(flips, flip{"a data bit", i + 20, 0x10})
	for _, f := range flips {
		b := bytes.Clone(clean)
		b[f.at] ^= f.bit
		writeFile(t, path, b)
		q := openTest(t, path, Options{})
		got := readAll(t, q, LaneCounts)
		dls, err := q.DeadLetters()
		switch {
		case err != nil:
			t.Fatal(err)
		case len(got) != 299 || len(dls) != 1 || dls[0].Record.Seq != 124 || q.LastSeq() != 300:
			t.Errorf("%s: read %d records, %d dead letters, last seq %d", f.name, len(got), len(dls), q.LastSeq())
		case !bytes.Contains(dls[0].Record.Data, []byte("payload-0123-")) || bytes.Contains(dls[0].Record.Data, []byte("payload-0124-")):
			t.Errorf("%s: the dead letter holds %q", f.name, dls[0].Record.Data)
		}
		for k, r := range got {
			if want := k + 1 + min(k/123, 1); r.Seq != uint64(want) {
				t.Fatalf("%s: record %d has seq %d, want %d", f.name, k, r.Seq, want)
			}
		}
		if s := mustAppend(t, q, Record{Lane: LaneCounts}); s[0] != 301 {
			t.Errorf("%s: next seq %d", f.name, s[0])
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSegmentErased: a stretch of the file reads 0xff (an erased flash
// page) from inside record 101 on. The records around it stay, what it
// held goes to the dead letters, and the next sequence number is the
// file's, at this open and the next (the damage review: 2^64-1, then
// records with seq 0 that no reader met, and appends that failed).
func TestSegmentErased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	_, b, _ := damageFixture(t, q)
	i := bytes.Index(b, []byte("payload-0100-"))
	end := bytes.Index(b, []byte("payload-0299-")) + 63 + 12
	for k := i + 20; k < min(i+20+4096, end-200); k++ {
		b[k] = 0xff
	}
	q, logs := reopenDamaged(t, path, b)
	if q.LastSeq() != 300 {
		t.Fatalf("last seq %d, want 300\n%s", q.LastSeq(), logs)
	}
	got := readAll(t, q, LaneCounts)
	dls, err := q.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, d := range dls {
		held += bytes.Count(d.Record.Data, []byte("payload-"))
		if d.Record.Seq < 101 || d.Record.Seq > 300 {
			t.Errorf("dead letter under seq %d", d.Record.Seq)
		}
	}
	// Erased payloads are gone; every one still readable is read or in a
	// dead letter, and the first 100 are read.
	if len(got) < 100 || got[99].Seq != 100 || len(dls) == 0 {
		t.Fatalf("read %d records, %d dead letters", len(got), len(dls))
	}
	for _, r := range got[100:] {
		if r.Seq <= 101 {
			t.Errorf("record %d read after the erased stretch", r.Seq)
		}
	}
	for round := range 2 {
		if s := mustAppend(t, q, Record{Lane: LaneEvents, Key: "m", Data: []byte("stop")}); s[0] != uint64(301+round) {
			t.Fatalf("round %d: appended as seq %d", round, s[0])
		}
		if got, err := q.Read(LaneEvents, 0, 10); err != nil || len(got) != round+1 {
			t.Fatalf("round %d: %d events read, %v", round, len(got), err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		q = openTest(t, path, Options{})
	}
}

// TestDamagedSequenceCounters: the file's stored sequence numbers (of
// records and of dead letters) read as erased flash, 0xff all through. The
// records and dead letters in the file give them again: appends are read
// and dead letters add up (the second damage review: the next Seq wrapped
// to 0, which no reader met, and new dead letters overwrote old ones).
func TestDamagedSequenceCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	seqs := mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("1")}, Record{Lane: LaneCounts, Key: "m", Data: []byte("2")},
		Record{Lane: LaneEvents, Key: "m", Data: []byte("stop")})
	for _, s := range seqs[:2] {
		if err := q.DeadLetter(context.Background(), Record{Lane: LaneCounts, Seq: s}, "refused"); err != nil {
			t.Fatal(err)
		}
	}
	updateClosed(t, q, func(tx *bolt.Tx) error {
		sys := tx.Bucket(bucketSys)
		erased := bytes.Repeat([]byte{0xff}, 8)
		return errors.Join(sys.Put(sysSeq, erased), sys.Put(sysDLSeq, erased))
	})
	q = openTest(t, path, Options{})
	if q.LastSeq() != 3 {
		t.Fatalf("last seq %d, want 3", q.LastSeq())
	}
	next := mustAppend(t, q, Record{Lane: LaneCounts, Key: "m", Data: []byte("3")})
	got := readAll(t, q, LaneCounts)
	if next[0] != 4 || len(got) != 1 || got[0].Seq != 4 {
		t.Fatalf("appended as seq %d; read %+v", next[0], got)
	}
	if err := q.DeadLetter(context.Background(), got[0], "refused"); err != nil {
		t.Fatal(err)
	}
	if dls, err := q.DeadLetters(); err != nil || len(dls) != 3 {
		t.Fatalf("%d dead letters, %v; want 3", len(dls), err)
	}
}
