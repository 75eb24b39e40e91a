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

// TestSegmentFramingDamaged breaks the length in front of one record of a
// segment: the records after it can no longer be found, so the whole segment
// goes to the dead letters as raw bytes (nothing is silently lost) and the
// file stays in use.
func TestSegmentFramingDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	recs, b, i := damageFixture(t, q, Record{Lane: LaneEvents, Key: "m", Data: []byte("event")})
	// len(4) version lane sec(8) nsec(4) keylen key datalen | data
	lenAt := i - (1 + 1 + 1 + 4 + 8 + 1 + 1 + 4)
	if n := binary.BigEndian.Uint32(b[lenAt:]); n != uint32(encodedSize(recs[123])) {
		t.Fatalf("length prefix at %d reads %d, want %d", lenAt, n, encodedSize(recs[123]))
	}
	binary.BigEndian.PutUint32(b[lenAt:], 0xffff)
	q, logs := reopenDamaged(t, path, b)
	// The 123 records before the break are kept (each has its checksum);
	// what follows it goes to the dead letters as one damaged piece (the
	// bitrot probe: all 400 of a segment went for a break in the middle).
	st := q.Stats()
	if st.Lanes[LaneCounts].Pending != 123 || st.Lanes[LaneEvents].Pending != 1 || st.DeadLetters != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if got := readAll(t, q, LaneCounts); len(got) != 123 || !bytes.HasPrefix(got[122].Data, []byte("payload-0122-")) {
		t.Fatalf("read %d records", len(got))
	}
	dls, err := q.DeadLetters()
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].Reason, "segment") || !dls[0].Damaged ||
		bytes.Contains(dls[0].Record.Data, []byte("payload-0122-")) || !bytes.Contains(dls[0].Record.Data, []byte("payload-0123-")) ||
		!bytes.Contains(dls[0].Record.Data, []byte("payload-0299-")) {
		t.Fatalf("dead letters = %d, %v (reason %q)", len(dls), err, dls[0].Reason)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("damaged segment not logged: %s", logs.String())
	}
	if s := mustAppend(t, q, Record{Lane: LaneCounts}); s[0] != 302 {
		t.Fatalf("next seq = %d", s[0])
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
