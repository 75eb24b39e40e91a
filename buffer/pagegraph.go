package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// bbolt's on-disk page layout, as far as checkPageGraph reads it.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	branchElemSize  = 16 // pos u32, ksize u32, pgid u64
	leafElemSize    = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHdrSize   = 16 // root u64, sequence u64
	pageBranch      = 0x01
	pageLeaf        = 0x02
	leafBucket      = 0x01
	metaRootOffset  = pageHeaderSize + 16 // after magic, version, page size, flags
	metaFreeOffset  = metaRootOffset + 16 // after the root bucket's header
	metaTxIDOffset  = metaFreeOffset + 16 // after the freelist and high-water page ids
	noFreelist      = ^uint64(0)
	freelistOverMax = 0xFFFF
)

// checkTreeOf runs checkPageGraph on db's current snapshot (at Open, and
// before compact copies a file): a damaged tree is a corruptError; a file
// that could not be read (permissions, an I/O error) is that error.
func checkTreeOf(db *bolt.DB, path string) error {
	err := db.View(func(tx *bolt.Tx) error { return checkPageGraph(tx, path) })
	if err == nil || errors.Is(err, fs.ErrPermission) || systemError(err) {
		return err
	}
	return &corruptError{err}
}

// checkPageGraph walks the page tree of tx's snapshot from its meta page,
// reading the file itself, and fails on a page referenced twice (a cycle,
// or two parents), a page beyond the file's high-water mark, a page that
// is neither branch nor leaf where the tree needs one, and a page both in
// the tree and in the freelist.
//
// bbolt trusts its tree: a branch page whose child is itself or an
// ancestor (bit rot, a torn write after a power cut) makes every cursor,
// and bbolt's own Check, descend forever, growing memory until the kernel
// kills the process, at every start. And a freelist that lists pages still
// in use ("page already freed") lets the first commit write over live
// pages, which makes such a cycle. So this runs before anything else reads
// the tree or writes to the file, and turns both into a corrupt file that
// is moved aside.
func checkPageGraph(tx *bolt.Tx, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.Size() < tx.Size() {
		return fmt.Errorf("file is %d bytes but its pages reach %d: truncated", fi.Size(), tx.Size())
	}
	ps := int64(tx.DB().Info().PageSize)
	hw := uint64(tx.Size() / ps)
	var buf []byte
	// read reads n bytes at off within the span of the page at id (its
	// overflow pages included: span bytes), into buf. Only the headers,
	// elements and bucket values are read, never the records: the walk
	// costs a few small reads a page, not a second read of the file.
	read := func(id uint64, span, off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || off+n > span {
			return nil, fmt.Errorf("page %d: %d bytes at %d do not fit in its %d", id, n, off, span)
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := f.ReadAt(buf, int64(id)*ps+off); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		return buf, nil
	}
	// header reads the page's header and checks its id and its extent.
	header := func(id uint64) (flags uint16, count int, span int64, err error) {
		if id >= hw {
			return 0, 0, 0, fmt.Errorf("page %d: beyond the file's %d pages", id, hw)
		}
		h, err := read(id, ps, 0, pageHeaderSize)
		if err != nil {
			return 0, 0, 0, err
		}
		if got := binary.NativeEndian.Uint64(h); got != id {
			return 0, 0, 0, fmt.Errorf("page %d: says it is page %d", id, got)
		}
		over := uint64(binary.NativeEndian.Uint32(h[12:]))
		if id+over >= hw {
			return 0, 0, 0, fmt.Errorf("page %d: its %d overflow pages reach beyond the file's %d pages", id, over, hw)
		}
		return binary.NativeEndian.Uint16(h[8:]), int(binary.NativeEndian.Uint16(h[10:])), int64(over+1) * ps, nil
	}
	// The meta page of this snapshot: the one with its transaction id
	// (read as they are: bbolt checks them, and uses the other when one is
	// damaged).
	var root, fl uint64
	found := false
	for id := range uint64(2) {
		m, err := read(id, ps, 0, metaTxIDOffset+8)
		if err != nil {
			return err
		}
		if binary.NativeEndian.Uint64(m[metaTxIDOffset:]) == uint64(tx.ID()) {
			root, fl, found = binary.NativeEndian.Uint64(m[metaRootOffset:]), binary.NativeEndian.Uint64(m[metaFreeOffset:]), true
		}
	}
	if !found {
		return fmt.Errorf("no meta page of transaction %d", tx.ID())
	}
	seen := make([]bool, hw)
	seen[0], seen[1] = true, true
	mark := func(id uint64, span int64) error {
		for i := range uint64(span / ps) {
			if seen[id+i] {
				return fmt.Errorf("page %d: referenced twice (a cycle in the tree, or a page with two parents)", id+i)
			}
			seen[id+i] = true
		}
		return nil
	}
	var walk func(id uint64) error
	walk = func(id uint64) error {
		if id < 2 {
			return fmt.Errorf("page %d: a meta page in the tree", id)
		}
		flags, n, span, err := header(id)
		if err != nil {
			return err
		}
		if err := mark(id, span); err != nil {
			return err
		}
		switch flags {
		case pageBranch:
			if n == 0 {
				return fmt.Errorf("page %d: a branch page with no elements", id)
			}
			elems, err := read(id, span, pageHeaderSize, int64(n)*branchElemSize)
			if err != nil {
				return err
			}
			children := make([]uint64, n)
			for i := range n {
				children[i] = binary.NativeEndian.Uint64(elems[i*branchElemSize+8:])
			}
			for _, c := range children {
				if err := walk(c); err != nil {
					return err
				}
			}
			return nil
		case pageLeaf:
			// Its sub-buckets: a bucket element's value starts with the
			// bucket's root page (0: an inline bucket, whose page is in
			// the value, and which has no sub-buckets).
			elems, err := read(id, span, pageHeaderSize, int64(n)*leafElemSize)
			if err != nil {
				return err
			}
			var roots []uint64
			type bucketElem struct{ at, size int64 }
			var buckets []bucketElem
			for i := range n {
				e := elems[i*leafElemSize:]
				if binary.NativeEndian.Uint32(e)&leafBucket == 0 {
					continue
				}
				pos, ks, vs := binary.NativeEndian.Uint32(e[4:]), binary.NativeEndian.Uint32(e[8:]), binary.NativeEndian.Uint32(e[12:])
				if vs < bucketHdrSize {
					return fmt.Errorf("page %d: element %d: a bucket value of %d bytes", id, i, vs)
				}
				buckets = append(buckets, bucketElem{pageHeaderSize + int64(i)*leafElemSize + int64(pos) + int64(ks), int64(vs)})
			}
			for _, b := range buckets {
				if b.at+b.size > span {
					return fmt.Errorf("page %d: a bucket value out of the page", id)
				}
				v, err := read(id, span, b.at, 8)
				if err != nil {
					return err
				}
				if r := binary.NativeEndian.Uint64(v); r != 0 {
					roots = append(roots, r)
				}
			}
			for _, r := range roots {
				if err := walk(r); err != nil {
					return err
				}
			}
			return nil
		default:
			return fmt.Errorf("page %d: flags %#x where the tree needs a branch or leaf page", id, flags)
		}
	}
	if err := walk(root); err != nil {
		return err
	}
	// The freelist: its own pages are in use; the pages it lists must not be.
	if fl == noFreelist {
		return nil
	}
	if fl < 2 {
		return fmt.Errorf("freelist page %d: a meta page", fl)
	}
	_, count, span, err := header(fl)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if err := mark(fl, span); err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	n, at := uint64(count), int64(pageHeaderSize)
	if count == freelistOverMax {
		c, err := read(fl, span, at, 8)
		if err != nil {
			return fmt.Errorf("freelist: %w", err)
		}
		n, at = binary.NativeEndian.Uint64(c), at+8
	}
	if n > uint64(span-at)/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit", fl, n)
	}
	ids, err := read(fl, span, at, int64(n)*8)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	for i := range n {
		if id := binary.NativeEndian.Uint64(ids[i*8:]); id < hw && seen[id] {
			return fmt.Errorf("freelist page %d lists page %d, which is in use (page already freed)", fl, id)
		}
	}
	return nil
}
