package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Segments: a commit's records of one lane stored as one value.
//
// A key per record costs bbolt a B+tree insertion per record and, at commit,
// one page write per 4 KiB leaf (measured: 0.2 of a raw write+fdatasync loop
// at 1,024-record batches). When one commit brings at least
// DefaultSegmentMinBytes of records for a lane, they are stored instead as a
// segment: a nested bucket of the lane, keyed by its first Seq, whose one
// value holds the records back to back, each behind a 4-byte length. bbolt
// gives a nested bucket pages of its own, so a commit writes a segment as one
// contiguous run and never rewrites older ones (values of one bucket share
// leaf pages, and a changed leaf is rewritten whole — plain values this big
// would drag their neighbours along).
//
// Invariant: the records of a segment are in Seq order, and no other entry
// of its lane (plain record or segment) has a Seq within the segment's
// [first, last]. So key order is Seq order across both forms, and the record
// with a given Seq is either the plain entry with that key or inside the
// segment at the last key before it. Removing some records of a segment (ack,
// quota drop, dead letter) rewrites the rest: as a segment when it still has
// DefaultSegmentMinBytes, else as plain records; removing all of them deletes
// the nested bucket. Quota merges and dead-letter retries first turn the
// segment concerned into plain records ("explode").

// DefaultSegmentMinBytes is the least a lane's part of one commit must weigh
// to be stored as a segment rather than as one key per record.
const DefaultSegmentMinBytes = 16 << 10

// segmentMaxBytes caps a segment: a bigger share of a commit is split into
// several. Removing part of a segment rewrites the rest, so the cap bounds
// what an ack that ends mid-segment costs (a drain acking 1,000 records of
// 200 bytes at a time rewrites at most 128 KiB per ack).
const segmentMaxBytes = 128 << 10

// segValue is the key of the one value inside a segment's bucket.
var segValue = []byte("r")

// errStop ends a walkLane early without an error.
var errStop = errors.New("stop walking")

// arena hands out memory for values a write transaction stores. bbolt keeps
// a value's slice until the commit, so the committer reuses one arena from
// transaction to transaction instead of allocating (and the garbage collector
// chasing) a segment's worth per commit. A nil *arena allocates.
type arena struct{ buf []byte }

// arenaKeepMax is the largest arena kept for the next transaction.
const arenaKeepMax = 4 << 20

func (a *arena) alloc(n int) []byte {
	if a == nil {
		return make([]byte, n)
	}
	if len(a.buf)+n > cap(a.buf) {
		// Slices handed out before keep the old block alive until the commit.
		a.buf = make([]byte, 0, max(n, 2*cap(a.buf), 256<<10))
	}
	b := a.buf[len(a.buf) : len(a.buf)+n : len(a.buf)+n]
	a.buf = a.buf[:len(a.buf)+n]
	return b
}

// reset makes the arena's memory reusable: call it only once no value of the
// last transaction is referenced any more (after Commit or Rollback).
func (a *arena) reset() {
	if cap(a.buf) > arenaKeepMax {
		a.buf = nil
	}
	a.buf = a.buf[:0]
}

func (a *arena) clone(b []byte) []byte {
	c := a.alloc(len(b))
	copy(c, b)
	return c
}

// segmentBlob lays records out as a segment value (a fresh copy).
func segmentBlob(a *arena, recs [][]byte) []byte {
	n := 0
	for _, r := range recs {
		n += 4 + len(r)
	}
	b := a.alloc(n)[:0]
	for _, r := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// segmentRecords splits the value of the segment stored under key into its
// sound records (slices of blob; see segmentScan). Where it holds damaged
// bytes, the records around them come with the error.
func segmentRecords(blob []byte, key uint64) ([][]byte, error) {
	recs, spans := segmentScan(blob, key)
	if len(spans) > 0 {
		return recs, spans[0].err
	}
	return recs, nil
}

// segSpan is a damaged stretch of a segment value: from a record that is
// not sound up to the next one that is (or the end).
type segSpan struct {
	at  int    // index in the records of the first record after it
	v   []byte // the damaged bytes
	err error
}

// segmentScan splits the value of the segment stored under key into its
// records and the damaged spans between them. A record is taken only when
// it is sound: framed by a length that fits, of the current version, its
// CRC-32C right and its Seq above the one before it (the first: key) — so
// a Seq, a length or any byte damaged is never taken for a record, nor
// used to key, order or acknowledge one (the damage review: one flipped
// bit of a Seq or of a plausible length condemned every record after it,
// set the next sequence number at the open, or rewrote a record over its
// neighbour). Past damage the next sound record is found again: the first
// offset holding one whose Seq is above the one before the damage by two
// at least (the damaged bytes held a record). A CRC-32C over a whole
// record passes damaged or foreign bytes about once in four billion.
func segmentScan(blob []byte, key uint64) (recs [][]byte, spans []segSpan) {
	last := key - 1 // the Seq of the last sound record
	for off := 0; off < len(blob); {
		if r, ok := soundAt(blob, off, last+1); ok {
			recs = append(recs, r)
			last = storedSeq(r)
			off += 4 + len(r)
			continue
		}
		var err error
		switch n, framed := framedAt(blob, off); {
		case len(blob)-off < 4:
			err = fmt.Errorf("%w: segment: %d stray bytes at offset %d", ErrCorruptRecord, len(blob)-off, off)
		case !framed:
			err = fmt.Errorf("%w: segment: record length %d at offset %d of %d", ErrCorruptRecord, n, off, len(blob))
		default:
			err = fmt.Errorf("%w: segment: the record at offset %d of %d fails its checksum", ErrCorruptRecord, off, len(blob))
		}
		next := off + 1
		for ; next < len(blob); next++ {
			if _, ok := soundAt(blob, next, last+2); ok {
				break
			}
		}
		spans = append(spans, segSpan{at: len(recs), v: blob[off:next], err: err})
		off = next
	}
	if len(recs) == 0 && len(spans) == 0 {
		spans = append(spans, segSpan{err: fmt.Errorf("%w: empty segment", ErrCorruptRecord)})
	}
	return recs, spans
}

// framedAt reports the length of the record framed at off and whether it is
// plausible: room for it and at least the smallest record.
func framedAt(blob []byte, off int) (int, bool) {
	if len(blob)-off < 4 {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(blob[off:]))
	return n, n >= recordOverhead+2 && n <= len(blob)-off-4
}

// soundAt returns the record framed at off if it is sound: of the current
// version, its checksum right, its Seq at least min.
func soundAt(blob []byte, off int, min uint64) ([]byte, bool) {
	n, ok := framedAt(blob, off)
	if !ok {
		return nil, false
	}
	r := blob[off+4 : off+4+n]
	if r[0] != codecVersion || storedSeq(r) < min ||
		crc32.Checksum(r[:n-4], crcTable) != binary.BigEndian.Uint32(r[n-4:]) {
		return nil, false
	}
	return r, true
}

// storedSeq is the Seq of a stored record, read without checking it (the
// encoding ends with seq(8) | crc(4)); 0 if it is too short to have one.
func storedSeq(rec []byte) uint64 {
	if len(rec) < 12 {
		return 0
	}
	return binary.BigEndian.Uint64(rec[len(rec)-12:])
}

// segmentOf returns the value of the segment stored under key k of lane
// bucket b, or nil when k holds a plain record or nothing.
func segmentOf(b *bolt.Bucket, k []byte) []byte {
	sb := b.Bucket(k)
	if sb == nil {
		return nil
	}
	return sb.Get(segValue)
}

// atOrBefore positions c on the last entry whose key is <= seq.
func atOrBefore(c *bolt.Cursor, seq uint64) (k, v []byte) {
	k, v = c.Seek(seqKey(seq))
	if k != nil && beUint64(k) == seq {
		return k, v
	}
	if k == nil {
		return c.Last()
	}
	return c.Prev()
}

// holder finds the entry of lane bucket c.Bucket() that may hold seq: the
// plain record stored under seq (plain), or the last segment stored under a
// key before it (blob, whether or not seq is in it: its records are known
// only by scanning it, its last Seq may be damaged). k is nil when there is
// none; otherwise c is left on that entry.
func holder(c *bolt.Cursor, seq uint64) (k, plain, blob []byte) {
	k, v := atOrBefore(c, seq)
	switch {
	case k == nil:
		return nil, nil, nil
	case v != nil:
		if beUint64(k) != seq {
			return nil, nil, nil
		}
		return k, v, nil
	}
	return k, nil, segmentOf(c.Bucket(), k)
}

// laneRec is one stored record met by walkLane.
type laneRec struct {
	seq uint64
	v   []byte // stored bytes; valid until the transaction changes the lane
	seg uint64 // key of the segment holding it; 0 for a plain record
	idx int    // position in the segment
	// bad is set for a segment whose framing is broken: v is then the whole
	// segment value and seq its key when none of its records could be read;
	// with span, v is the damaged span between records read (seq: one after
	// the record before it, idx: -1).
	bad  error
	span bool
}

// walkLane calls fn for every record of lane bucket b with Seq > after, in
// Seq order. fn may return errStop to end the walk.
func walkLane(b *bolt.Bucket, after uint64, fn func(r laneRec) error) error {
	if after == ^uint64(0) {
		return nil
	}
	c := b.Cursor()
	var k, v []byte
	if after == 0 {
		k, v = c.First()
	} else if hk, plain, _ := holder(c, after+1); hk != nil {
		k, v = hk, plain // a segment starting at or before after may hold later records
	} else {
		k, v = c.Seek(seqKey(after + 1))
	}
	for ; k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return fmt.Errorf("%w: key %x is not a sequence number", ErrCorruptRecord, k)
		}
		key := beUint64(k)
		if v != nil {
			if key > after {
				if err := fn(laneRec{seq: key, v: v}); err != nil {
					return stopped(err)
				}
			}
			continue
		}
		blob := segmentOf(b, k)
		recs, spans := segmentScan(blob, key)
		if len(recs) == 0 {
			// Nothing of it could be read: all of it is one damaged piece.
			if err := fn(laneRec{seq: key, v: blob, seg: key, bad: spans[0].err}); err != nil {
				return stopped(err)
			}
			continue
		}
		prev := key - 1
		for i := 0; i <= len(recs); i++ {
			for len(spans) > 0 && spans[0].at == i {
				// Damaged bytes up to the next sound record: they stand
				// for one record, after the one before (their own Seq is
				// not to be trusted, the next sound one's is above it),
				// met by a walk that may be owed a record of them.
				sp := spans[0]
				spans = spans[1:]
				prev++
				if i == len(recs) || storedSeq(recs[i]) > after+1 {
					err := sp.err
					if i < len(recs) {
						if s := storedSeq(recs[i]); s > prev+1 {
							err = fmt.Errorf("%w (it held what this lane had after seq %d and before %d)", err, prev-1, s)
						}
					}
					if err := fn(laneRec{seq: prev, v: sp.v, seg: key, idx: -1, bad: err, span: true}); err != nil {
						return stopped(err)
					}
				}
			}
			if i == len(recs) {
				break
			}
			prev = storedSeq(recs[i]) // sound: above the one before
			if prev > after {
				if err := fn(laneRec{seq: prev, v: recs[i], seg: key, idx: i}); err != nil {
					return stopped(err)
				}
			}
		}
	}
	return nil
}

func stopped(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// firstRecord returns the stored bytes of the lane's head record, or nil.
func firstRecord(b *bolt.Bucket) ([]byte, error) {
	var head []byte
	err := walkLane(b, 0, func(r laneRec) error {
		if r.bad != nil {
			return r.bad
		}
		head = r.v
		return errStop
	})
	return head, err
}

// getRecord returns the stored bytes of the record with seq, or nil.
func getRecord(b *bolt.Bucket, seq uint64) []byte {
	k, plain, blob := holder(b.Cursor(), seq)
	if plain != nil || blob == nil {
		return plain
	}
	recs, _ := segmentRecords(blob, beUint64(k)) // sound, around damage too
	i, ok := slices.BinarySearchFunc(recs, seq, func(r []byte, s uint64) int {
		switch rs := storedSeq(r); {
		case rs < s:
			return -1
		case rs > s:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return recs[i]
}

// putRecords stores records of one lane (in Seq order, above every Seq of the
// lane's segments' ranges or in a range no segment covers): as one segment
// when they weigh at least minBytes, else one key each. The bytes are copied.
func putRecords(b *bolt.Bucket, recs [][]byte, minBytes int, a *arena) error {
	if len(recs) == 0 {
		return nil
	}
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	if minBytes > 0 && n >= minBytes {
		// Split evenly into parts of at most segmentMaxBytes; each part then
		// holds more than segmentMaxBytes/2 >= minBytes.
		parts := (n + segmentMaxBytes - 1) / segmentMaxBytes
		target, start, acc := n/parts, 0, 0
		for i, r := range recs {
			acc += len(r)
			if acc < target && i < len(recs)-1 {
				continue
			}
			if err := putSegment(b, recs[start:i+1], a); err != nil {
				return err
			}
			start, acc = i+1, 0
		}
		return nil
	}
	for _, r := range recs {
		if err := b.Put(seqKey(storedSeq(r)), a.clone(r)); err != nil {
			return err
		}
	}
	return nil
}

func putSegment(b *bolt.Bucket, recs [][]byte, a *arena) error {
	first := storedSeq(recs[0])
	sb, err := b.CreateBucket(seqKey(first))
	if err != nil {
		return fmt.Errorf("create segment %d: %w", first, err)
	}
	return sb.Put(segValue, segmentBlob(a, recs))
}

// replaceSegment deletes the segment under key k and stores keep (records of
// it, in order) in its place; minBytes < 0 stores them as plain records.
func replaceSegment(b *bolt.Bucket, k []byte, keep [][]byte, minBytes int, a *arena) error {
	// keep points into the segment's pages. Deleting the bucket only marks
	// them free (they are reused after the commit, and bbolt remaps the file
	// only while committing), and putRecords copies keep before the commit.
	if err := b.DeleteBucket(k); err != nil {
		return fmt.Errorf("delete segment %d: %w", beUint64(k), err)
	}
	return putRecords(b, keep, minBytes, a)
}

// explodeAround turns the segment whose range holds seq (if any) into plain
// records, so that seq can be written or rewritten as a plain key.
func explodeAround(b *bolt.Bucket, seq uint64, a *arena) error {
	k, _, blob := holder(b.Cursor(), seq)
	if blob == nil {
		return nil
	}
	recs, err := segmentRecords(blob, beUint64(k))
	switch {
	case err != nil:
		// Damaged: its range is not known (repairing sets it aside).
		return fmt.Errorf("segment %d: %w", beUint64(k), err)
	case storedSeq(recs[len(recs)-1]) < seq:
		return nil // seq is past it
	}
	return replaceSegment(b, bytes.Clone(k), recs, -1, a)
}

// removeSeqs deletes the records with the given Seqs (ascending) from lane
// bucket b, calling removed with each one's stored bytes (valid during the
// call) first. Seqs not present are skipped.
func removeSeqs(b *bolt.Bucket, seqs []uint64, minBytes int, a *arena, removed func(v []byte)) error {
	for i := 0; i < len(seqs); {
		c := b.Cursor()
		k, plain, blob := holder(c, seqs[i])
		if plain != nil {
			removed(plain)
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if blob == nil {
			i++
			continue
		}
		// The seqs up to the next entry's key are this segment's or
		// nowhere (its own last Seq may be damaged: an ack going by it
		// removed nothing — the damage review).
		last := ^uint64(0)
		if nk, _ := c.Next(); nk != nil {
			last = beUint64(nk) - 1
		}
		j := i
		for j < len(seqs) && seqs[j] <= last {
			j++
		}
		recs, err := segmentRecords(blob, beUint64(k))
		if err != nil {
			return fmt.Errorf("segment %d: %w", beUint64(k), err)
		}
		want := seqs[i:j]
		keep := recs[:0:0]
		for _, r := range recs {
			s := storedSeq(r)
			for len(want) > 0 && want[0] < s {
				want = want[1:]
			}
			if len(want) > 0 && want[0] == s {
				removed(r)
				continue
			}
			keep = append(keep, r)
		}
		if len(keep) < len(recs) {
			if err := replaceSegment(b, bytes.Clone(k), keep, minBytes, a); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}
