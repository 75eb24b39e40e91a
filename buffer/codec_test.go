package buffer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"testing"
	"time"
)

func TestRecordCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		rec  Record
	}{
		{"empty", Record{}},
		{"full", Record{Seq: 42, Lane: LaneCounts, Key: "press-07", Time: time.Date(2026, 11, 30, 5, 0, 0, 123456789, time.UTC), Data: []byte(`{"good":17}`)}},
		{"max seq", Record{Seq: math.MaxUint64, Lane: LaneTelemetry, Key: "k", Time: time.Unix(0, 0), Data: []byte{0}}},
		{"before 1970", Record{Seq: 1, Lane: LaneEvents, Time: time.Date(1601, 1, 1, 0, 0, 0, 999999999, time.UTC)}},
		{"large", Record{Seq: 7, Key: string(bytes.Repeat([]byte("x"), 300)), Data: bytes.Repeat([]byte{0xff}, 70000)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := encodeRecord(nil, tc.rec)
			if len(enc) != encodedSize(tc.rec) {
				t.Fatalf("encodedSize = %d, encoded %d bytes", encodedSize(tc.rec), len(enc))
			}
			got, err := decodeRecord(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			assertSameRecord(t, got, tc.rec)
			// Every single-byte change is caught (CRC-32C detects all bursts <= 32 bits).
			for i := 0; i < len(enc); i++ {
				if i == 64 && len(enc) > 256 {
					i = len(enc) - 64 // the long middle is plain payload; CRC coverage is the same
				}
				bad := bytes.Clone(enc)
				bad[i] ^= 0x5a
				if _, err := decodeRecord(bad); !errors.Is(err, ErrCorruptRecord) {
					t.Fatalf("byte %d flipped: err = %v, want ErrCorruptRecord", i, err)
				}
			}
			if _, err := decodeRecord(enc[:len(enc)-1]); !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("truncated: err = %v, want ErrCorruptRecord", err)
			}
		})
	}
}

func assertSameRecord(t *testing.T, got, want Record) {
	t.Helper()
	if got.Seq != want.Seq || got.Lane != want.Lane || got.Key != want.Key || !bytes.Equal(got.Data, want.Data) || !got.Time.Equal(want.Time) || got.Time.IsZero() != want.Time.IsZero() {
		t.Fatalf("record mismatch:\n got  %+v\n want %+v", got, want)
	}
}

func TestDeadLetterCodec(t *testing.T) {
	d := DeadLetter{ID: 3, Reason: "odoo: ValidationError: work order done", At: time.Unix(1700000000, 5).UTC(),
		Record: Record{Seq: 9, Lane: LaneEvents, Key: "m1", Time: time.Unix(1700000000, 0), Data: []byte("x")}}
	got, err := decodeDeadLetter(3, encodeDeadLetter(d))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != d.ID || got.Reason != d.Reason || !got.At.Equal(d.At) {
		t.Fatalf("got %+v, want %+v", got, d)
	}
	assertSameRecord(t, got.Record, d.Record)
	if _, err := decodeDeadLetter(3, []byte{1, 2}); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("short dead letter: err = %v", err)
	}
}

// FuzzRecordCodec feeds arbitrary bytes to the decoder (it must not panic, and
// whatever it accepts must survive a re-encode) and arbitrary fields through
// encode+decode.
func FuzzRecordCodec(f *testing.F) {
	f.Add(encodeRecord(nil, Record{Seq: 1, Lane: LaneCounts, Key: "press-07", Time: time.Unix(1, 2), Data: []byte("17")}), "m", []byte("d"), uint64(1), uint8(0), int64(0), uint32(0))
	f.Add(encodeRecord(nil, Record{}), "", []byte(nil), uint64(math.MaxUint64), uint8(2), int64(-62135596800), uint32(999999999))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0, 0, 0, 0}, "k", bytes.Repeat([]byte{7}, 300), uint64(5), uint8(1), int64(1e12), uint32(1))
	f.Add([]byte("garbage"), "ключ", []byte{0}, uint64(0), uint8(9), int64(-1), uint32(5e8))
	f.Fuzz(func(t *testing.T, raw []byte, key string, data []byte, seq uint64, lane uint8, sec int64, nsec uint32) {
		if rec, err := decodeRecord(raw); err == nil {
			again, err := decodeRecord(encodeRecord(nil, rec))
			if err != nil {
				t.Fatalf("re-encode of accepted record fails: %v", err)
			}
			assertSameRecord(t, again, rec)
		} else if !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("decode error %v is not ErrCorruptRecord", err)
		}
		want := Record{Seq: seq, Lane: Lane(lane % NumLanes), Key: key, Data: data}
		if sec != 0 || nsec != 0 {
			want.Time = time.Unix(sec, int64(nsec%1e9)).UTC()
		}
		if len(want.Data) == 0 {
			want.Data = nil
		}
		got, err := decodeRecord(encodeRecord(nil, want))
		if err != nil {
			t.Fatalf("decode of %+v: %v", want, err)
		}
		if len(got.Data) == 0 {
			got.Data = nil
		}
		assertSameRecord(t, got, want)
	})
}

// TestStoredLayoutIsPinned: the bytes a record and a dead letter are stored
// as. Files written by one version are read by the next (and by the one
// before, see fileFormat): if this fails, the layout changed — give it a new
// codecVersion (and fileFormat), keep decoding the old one, and only then
// update these bytes. (A development build once moved Seq without a new
// version, and its files read as damaged ever after.)
func TestStoredLayoutIsPinned(t *testing.T) {
	r := Record{Seq: 0x0102030405060708, Lane: LaneCounts, Key: "m1", Data: []byte("d"),
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	// version, lane, seconds, nanos+1, key, data, seq, CRC-32C
	const wantRecord = "01" + "01" + "00000000695735a5" + "00000007" + "026d31" + "0164" + "0102030405060708" + "89f41890"
	if got := hex.EncodeToString(encodeRecord(nil, r)); got != wantRecord {
		t.Fatalf("record stored as\n%s\nwant\n%s", got, wantRecord)
	}
	// time (ns), reason, record
	dl := hex.EncodeToString(encodeDeadLetter(DeadLetter{At: time.Unix(0, 1).UTC(), Reason: "r", Record: r}))
	if want := "0000000000000001" + "0172" + wantRecord; dl != want {
		t.Fatalf("dead letter stored as\n%s\nwant\n%s", dl, want)
	}
	// A segment: each record behind its length.
	rec := encodeRecord(nil, r)
	if seg, want := hex.EncodeToString(segmentBlob(&arena{}, [][]byte{rec, rec})), "0000001f"+wantRecord+"0000001f"+wantRecord; seg != want {
		t.Fatalf("segment stored as\n%s\nwant\n%s", seg, want)
	}
}
