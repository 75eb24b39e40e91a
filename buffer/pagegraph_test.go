package buffer

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkGraph runs checkPageGraph on a fresh snapshot of db, plain and
// thorough, and bbolt's own check with it: a sound file must pass all.
func checkGraph(t *testing.T, db *bolt.DB, path, when string) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt's check fails (the layout is not sound): %w", err)
		}
		if err := checkPageGraph(tx, path, false); err != nil {
			return err
		}
		return checkPageGraph(tx, path, true)
	}); err != nil {
		t.Fatalf("%s: a sound file called damaged: %v", when, err)
	}
}

// TestPageGraphSoundLayouts: every layout bbolt writes passes the page
// tree's check — inline and nested buckets (segments), overflow pages,
// branch pages with overflow, a freelist past 0xFFFF ids (its count in the
// first id), pending pages held by a reader, a file without a synced
// freelist, page sizes from 1 KiB to 64 KiB, a compacted copy, after
// random puts and deletes. A false alarm moves a whole buffer aside.
func TestPageGraphSoundLayouts(t *testing.T) {
	for _, ps := range []int{1024, 4096, 16384, 65536} {
		for _, noSync := range []bool{false, true} {
			t.Run(fmt.Sprintf("page%d/noFreelistSync=%v", ps, noSync), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "b.db")
				db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: ps, NoFreelistSync: noSync, NoSync: true, FreelistType: bolt.FreelistMapType,
					// room to grow without a remap, which waits for the reader held below
					InitialMmapSize: 256 << 20})
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, uint64(ps)))
				val := func() []byte {
					n := rng.IntN(64)
					if rng.IntN(20) == 0 {
						n = rng.IntN(3 * ps) // an overflow page
					}
					return make([]byte, n)
				}
				var reader *bolt.Tx
				for round := range 40 {
					if err := db.Update(func(tx *bolt.Tx) error {
						top, err := tx.CreateBucketIfNotExists([]byte(fmt.Sprint("lane", round%3)))
						if err != nil {
							return err
						}
						for range 40 {
							// A segment: a nested bucket, inline while small.
							seg, err := top.CreateBucketIfNotExists(fmt.Appendf(nil, "seg%04d", rng.IntN(200)))
							if err != nil {
								return err
							}
							for range rng.IntN(30) {
								if err := seg.Put(binary.BigEndian.AppendUint64(nil, rng.Uint64()%5000), val()); err != nil {
									return err
								}
							}
							// Long keys make branch pages with overflow.
							if rng.IntN(10) == 0 {
								if err := top.Put(make([]byte, 1+rng.IntN(min(ps, 4000))), val()); err != nil {
									return err
								}
							}
						}
						// Deletes: whole segments and records, freeing pages.
						for range 15 {
							k := fmt.Appendf(nil, "seg%04d", rng.IntN(200))
							if rng.IntN(2) == 0 {
								_ = top.DeleteBucket(k)
							} else if seg := top.Bucket(k); seg != nil {
								c := seg.Cursor()
								for k, _ := c.First(); k != nil && rng.IntN(3) != 0; k, _ = c.Next() {
									_ = c.Delete()
								}
							}
						}
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					// A reader held over some commits leaves pending pages
					// in the freelist written meanwhile.
					switch round % 10 {
					case 3:
						if reader, err = db.Begin(false); err != nil {
							t.Fatal(err)
						}
					case 7:
						_ = reader.Rollback()
						reader = nil
					}
					checkGraph(t, db, path, fmt.Sprint("round ", round))
				}
				if reader != nil {
					_ = reader.Rollback()
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				// Opened again: read-only (the stopped status) and for writing.
				for _, ro := range []bool{true, false} {
					db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: ro, FreelistType: bolt.FreelistMapType})
					if err != nil {
						t.Fatal(err)
					}
					checkGraph(t, db, path, fmt.Sprint("reopened read-only=", ro))
					_ = db.Close()
				}
				// A compacted copy.
				src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				dstPath := path + ".compact"
				dst, err := bolt.Open(dstPath, 0o600, &bolt.Options{PageSize: ps})
				if err != nil {
					t.Fatal(err)
				}
				if err := bolt.Compact(dst, src, 1<<20); err != nil {
					t.Fatal(err)
				}
				_ = src.Close()
				checkGraph(t, dst, dstPath, "compacted")
				_ = dst.Close()
			})
		}
	}
}

// TestPageGraphLongFreelist: a freelist of more than 0xFFFF ids keeps its
// count in its first id; the check reads it so.
func TestPageGraphLongFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 512, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// 80,000 values a page each, then all deleted but every other one.
	for b := range 8 {
		if err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for i := range 10000 {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, uint64(b*10000+i)), make([]byte, 400)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("b")).Cursor()
		i := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if i%50 != 0 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			i++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// One more commit so that the freelist written holds them all.
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("x"), nil) }); err != nil {
		t.Fatal(err)
	}
	if n := db.Stats().FreePageN + db.Stats().PendingPageN; n < 0xFFFF {
		t.Fatalf("only %d free pages: the freelist has no overflow count", n)
	}
	checkGraph(t, db, path, "long freelist")
}

// TestThoroughCheckAsBboltsCheck: what bbolt's own Check finds beyond the
// page tree's shape — keys out of order, in a page or against the bounds
// of its parent, a page neither in use nor free —
// the thorough walk finds too (bbolt's check of the same file says so
// first), and the open moves such a file aside as it did when it ran
// bbolt's check.
func TestThoroughCheckAsBboltsCheck(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, b []byte, root int) // root: the counts lane's root page
	}{
		{"keys out of order", func(t *testing.T, b []byte, _ int) {
			// Swap the first two record keys of a lane's leaf page.
			for off := 2 * 4096; off+4096 <= len(b); off += 4096 {
				p := b[off:]
				if binary.LittleEndian.Uint16(p[8:]) != 0x02 || binary.LittleEndian.Uint64(p) != uint64(off/4096) ||
					binary.LittleEndian.Uint16(p[10:]) < 2 {
					continue
				}
				e0, e1 := p[16:], p[32:]
				if binary.LittleEndian.Uint32(e0) != 0 || binary.LittleEndian.Uint32(e0[8:]) != 8 || binary.LittleEndian.Uint32(e1[8:]) != 8 {
					continue // a bucket's element, or not a record's key
				}
				k0 := p[16+binary.LittleEndian.Uint32(e0[4:]):][:8]
				k1 := p[32+binary.LittleEndian.Uint32(e1[4:]):][:8]
				var tmp [8]byte
				copy(tmp[:], k0)
				copy(k0, k1)
				copy(k1, tmp[:])
				return
			}
			t.Fatal("no leaf page of records found")
		}},
		{"keys below the parent's", func(t *testing.T, b []byte, root int) {
			// The lane's root branch page's second key one above the
			// first key of the child it leads to: every key in order, but
			// that child's first one below the bound its parent sets.
			p := b[root*4096:]
			if binary.LittleEndian.Uint16(p[8:]) != 0x01 || binary.LittleEndian.Uint16(p[10:]) < 3 {
				t.Fatalf("the lane's root page %d is no branch page of 3 keys or more", root)
			}
			e1 := p[32:]
			k := p[32+binary.LittleEndian.Uint32(e1):][:binary.LittleEndian.Uint32(e1[4:])]
			binary.BigEndian.PutUint64(k, binary.BigEndian.Uint64(k)+1)
		}},
		{"page leaked", func(t *testing.T, b []byte, _ int) {
			// The freelist forgets its last page: neither in use nor free.
			meta := 0 // the newer meta page, by its transaction id
			if binary.LittleEndian.Uint64(b[4096+64:]) > binary.LittleEndian.Uint64(b[64:]) {
				meta = 4096
			}
			fp := int(binary.LittleEndian.Uint64(b[meta+48:])) * 4096
			n := binary.LittleEndian.Uint16(b[fp+10:])
			if n == 0 || n == 0xFFFF {
				t.Fatalf("the fixture's freelist lists %d pages", n)
			}
			binary.LittleEndian.PutUint16(b[fp+10:], n-1)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			// One key per record, in several commits: branch pages, and
			// pages freed by the later commits.
			q := openTest(t, path, Options{segmentMinBytes: -1})
			for i := range 5 {
				recs := make([]Record, 400)
				for j := range recs {
					recs[j] = Record{Lane: LaneCounts, Key: "m", Data: []byte(fmt.Sprintf("record %d/%d", i, j))}
				}
				mustAppend(t, q, recs...)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var root int
			_ = db.View(func(tx *bolt.Tx) error {
				root = int(tx.Bucket(bucketLanes[LaneCounts]).Root())
				return nil
			})
			_ = db.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, b, root)
			writeFile(t, path, b)

			db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, FreelistType: bolt.FreelistMapType})
			if err != nil {
				t.Fatal(err)
			}
			var bbolts, ours, plain error
			_ = db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					if bbolts == nil {
						bbolts = err
					}
				}
				ours, plain = checkPageGraph(tx, path, true), checkPageGraph(tx, path, false)
				return nil
			})
			_ = db.Close()
			t.Logf("bbolt's check: %v\nthe thorough walk: %v\nthe plain walk (compact's): %v", bbolts, ours, plain)
			if bbolts == nil {
				t.Fatal("bbolt's own check finds nothing: the fixture is not what it means to be")
			}
			if ours == nil {
				t.Fatal("the thorough walk finds nothing wrong where bbolt's check does")
			}
			var logs syncBuffer
			q = openTest(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if moved := q.Recovered(); moved == "" || !strings.Contains(logs.String(), "moved_to=") {
				t.Fatalf("the open kept the file (logs: %s)", logs.String())
			}
		})
	}
}
