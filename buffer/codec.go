package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// codecVersion is the first byte of every stored record; a new layout gets a new number.
const codecVersion = 1

// recordOverhead is the fixed part of an encoded record:
// version, lane, seq, time seconds, time nanos, crc.
const recordOverhead = 1 + 1 + 8 + 8 + 4 + 4

// elemOverhead estimates what bbolt spends per key/value beyond the value: the
// 8-byte key and the 16-byte leaf element header.
const elemOverhead = 8 + 16

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptRecord reports a stored record that fails to decode (bad length,
// version or checksum).
var ErrCorruptRecord = errors.New("corrupt record")

// encodeRecord appends the stored form of r to dst:
// version | lane | unix sec(8) | nanos+1(4) | uvarint keylen | key | uvarint datalen | data | seq(8) | crc32c(4).
// Seq comes last so that Append can encode and checksum everything else in
// the caller's goroutine; the committer only seals it with the Seq.
func encodeRecord(dst []byte, r Record) []byte {
	dst, sum := encodePrefix(dst, r)
	return sealRecord(dst, sum, r.Seq)
}

// encodePrefix appends everything but Seq and checksum, and returns the
// CRC-32C of what it appended.
func encodePrefix(dst []byte, r Record) ([]byte, uint32) {
	start := len(dst)
	dst = append(dst, codecVersion, byte(r.Lane))
	var sec int64
	var nsec uint32
	if !r.Time.IsZero() {
		sec = r.Time.Unix()
		nsec = uint32(r.Time.Nanosecond()) + 1 // +1 so that 0 means "zero time"
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(sec))
	dst = binary.BigEndian.AppendUint32(dst, nsec)
	dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
	dst = append(dst, r.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
	dst = append(dst, r.Data...)
	return dst, crc32.Checksum(dst[start:], crcTable)
}

// sealRecord appends seq and the checksum to a prefix whose CRC is sum.
func sealRecord(dst []byte, sum uint32, seq uint64) []byte {
	n := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint32(dst, crc32.Update(sum, crcTable, dst[n:]))
}

// encodedSize is len(encodeRecord(nil, r)) without encoding.
func encodedSize(r Record) int {
	return recordOverhead + uvarintLen(uint64(len(r.Key))) + len(r.Key) + uvarintLen(uint64(len(r.Data))) + len(r.Data)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decodeRecord parses a stored record. The result does not alias b (bbolt's
// memory is only valid inside its transaction).
func decodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < recordOverhead+2 {
		return r, fmt.Errorf("%w: %d bytes is too short", ErrCorruptRecord, len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return r, fmt.Errorf("%w: checksum mismatch", ErrCorruptRecord)
	}
	if body[0] != codecVersion {
		return r, fmt.Errorf("%w: unknown version %d", ErrCorruptRecord, body[0])
	}
	if body[1] >= NumLanes {
		return r, fmt.Errorf("%w: unknown lane %d", ErrCorruptRecord, body[1])
	}
	r.Lane = Lane(body[1])
	sec := int64(binary.BigEndian.Uint64(body[2:]))
	nsec := binary.BigEndian.Uint32(body[10:])
	if nsec > 1e9 {
		return r, fmt.Errorf("%w: bad nanoseconds %d", ErrCorruptRecord, nsec)
	}
	if nsec != 0 {
		r.Time = time.Unix(sec, int64(nsec-1)).UTC()
	} else if sec != 0 {
		return r, fmt.Errorf("%w: zero time with seconds set", ErrCorruptRecord)
	}
	r.Seq = binary.BigEndian.Uint64(body[len(body)-8:])
	rest := body[14 : len(body)-8]
	key, rest, err := readBytes(rest)
	if err != nil {
		return r, fmt.Errorf("%w: key: %w", ErrCorruptRecord, err)
	}
	data, rest, err := readBytes(rest)
	if err != nil {
		return r, fmt.Errorf("%w: data: %w", ErrCorruptRecord, err)
	}
	if len(rest) != 0 {
		return r, fmt.Errorf("%w: %d trailing bytes", ErrCorruptRecord, len(rest))
	}
	r.Key = string(key)
	if data != nil {
		r.Data = append([]byte(nil), data...)
	}
	return r, nil
}

func readBytes(b []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, errors.New("bad length")
	}
	b = b[k:]
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d exceeds %d remaining bytes", n, len(b))
	}
	if n == 0 {
		return []byte{}, b, nil
	}
	return b[:n], b[n:], nil
}

// encodeDeadLetter stores a dead letter: unix nanos(8) | uvarint reasonlen | reason | record.
func encodeDeadLetter(d DeadLetter) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(d.At.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(d.Reason)))
	b = append(b, d.Reason...)
	return encodeRecord(b, d.Record)
}

func decodeDeadLetter(id uint64, b []byte) (DeadLetter, error) {
	d := DeadLetter{ID: id}
	if len(b) < 8 {
		return d, fmt.Errorf("%w: dead letter too short", ErrCorruptRecord)
	}
	d.At = time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
	reason, rest, err := readBytes(b[8:])
	if err != nil {
		return d, fmt.Errorf("%w: dead letter reason: %w", ErrCorruptRecord, err)
	}
	d.Reason = string(reason)
	d.Record, err = decodeRecord(rest)
	return d, err
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }
