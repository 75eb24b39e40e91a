package buffer

import (
	"bytes"
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

// checkTreeOf runs checkPageGraph on db's current snapshot (at Open,
// thorough, and before compact copies a file): a damaged tree is a
// corruptError; a file that could not be read (permissions, an I/O error)
// is that error. Compact's is not thorough: it copies a file whose keys
// are out of order or whose pages leaked as it did before, the copy
// leaving the leaked pages behind.
func checkTreeOf(db *bolt.DB, path string, thorough bool) error {
	err := db.View(func(tx *bolt.Tx) error { return checkPageGraph(tx, path, thorough) })
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
//
// thorough adds the rest of bbolt's Check, the same rules in the same
// words: the keys of every page in order, within the bounds its parent
// branch pages set (per bucket), and every page below the high-water mark
// in the tree, the freelist or a meta page. The open runs it instead of
// tx.Check, whose goroutine reads every page through bbolt's mapping,
// where the pages count in the process's RSS and nothing hands them back
// between pages: on a machine whose cores were busy, a check of a large
// file peaked the agent above its memory limit (docs/benchmarks.md, notes of the
// benchmarks). These reads go through the page cache into one reused
// buffer.
func checkPageGraph(tx *bolt.Tx, path string, thorough bool) error {
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
	var buf, kbuf []byte
	// The first page of page pageID, read whole: most pages' header,
	// elements and keys in one read.
	var page []byte
	pageID := ^uint64(0)
	// readInto reads n bytes at off within the span of the page at id (its
	// overflow pages included: span bytes): from its first page, read
	// whole, or else into *b. Only the headers, elements, keys and bucket
	// values are read, never the records' values (but those on a first
	// page).
	readInto := func(b *[]byte, id uint64, span, off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || off+n > span {
			return nil, fmt.Errorf("page %d: %d bytes at %d do not fit in its %d", id, n, off, span)
		}
		if off+n <= ps {
			if id != pageID {
				page = slices.Grow(page[:0], int(ps))[:ps]
				if _, err := f.ReadAt(page, int64(id)*ps); err != nil {
					pageID = ^uint64(0)
					return nil, fmt.Errorf("page %d: %w", id, err)
				}
				pageID = id
			}
			return page[off : off+n], nil
		}
		*b = slices.Grow((*b)[:0], int(n))[:n]
		if _, err := f.ReadAt(*b, int64(id)*ps+off); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		return *b, nil
	}
	read := func(id uint64, span, off, n int64) ([]byte, error) { return readInto(&buf, id, span, off, n) }
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
	// keysOf reads the keys of a page's n elements, whose headers are
	// elems (a branch element starts with the key's position, relative to
	// the element, and size; a leaf element has its flags before them).
	// It returns them as slices of one buffer, valid until the next read.
	type keyAt struct{ at, n int64 }
	var spans []keyAt
	var keys [][]byte
	keysOf := func(id uint64, pageSpan int64, elems []byte, n int, leaf bool) ([][]byte, error) {
		spans, keys = spans[:0], keys[:0]
		lo, hi := pageSpan, int64(0)
		elemSize, pos := int64(branchElemSize), 0
		if leaf {
			elemSize, pos = leafElemSize, 4
		}
		for i := range n {
			e := elems[int64(i)*elemSize+int64(pos):]
			at := pageHeaderSize + int64(i)*elemSize + int64(binary.NativeEndian.Uint32(e))
			k := int64(binary.NativeEndian.Uint32(e[4:]))
			if at+k > pageSpan {
				return nil, fmt.Errorf("page %d: element %d: its key is out of the page", id, i)
			}
			spans = append(spans, keyAt{at, k})
			lo, hi = min(lo, at), max(hi, at+k)
		}
		if n == 0 {
			return keys, nil
		}
		var sum int64
		for _, s := range spans {
			sum += s.n
		}
		if hi-lo <= max(ps, 4*sum) {
			// Keys side by side with small values: one read.
			b, err := readInto(&kbuf, id, pageSpan, lo, hi-lo)
			if err != nil {
				return nil, err
			}
			for _, s := range spans {
				keys = append(keys, b[s.at-lo:s.at-lo+s.n])
			}
			return keys, nil
		}
		// Keys far apart (between large values): a read each.
		kbuf = slices.Grow(kbuf[:0], int(sum))[:sum]
		var off int64
		for _, s := range spans {
			k := kbuf[off : off+s.n]
			if _, err := f.ReadAt(k, int64(id)*ps+s.at); err != nil {
				return nil, fmt.Errorf("page %d: %w", id, err)
			}
			keys = append(keys, k)
			off += s.n
		}
		return keys, nil
	}
	// keyOrder is bbolt's verifyKeyOrder: the key at index i of a page
	// against the one before it (the greatest key under the previous
	// child, for a branch page; for the first, the parent's bound) and the
	// parent's next key.
	keyOrder := func(id uint64, kind string, i int, key, prev, next []byte) error {
		if i == 0 && prev != nil && bytes.Compare(prev, key) > 0 {
			return fmt.Errorf("the first key[%d]=(hex)%x on %s page(%d) needs to be >= the key in the ancestor (%x)", i, key, kind, id, prev)
		}
		if i > 0 {
			switch bytes.Compare(prev, key) {
			case 1:
				return fmt.Errorf("key[%d]=(hex)%x on %s page(%d) needs to be > (found <) than previous element (hex)%x", i, key, kind, id, prev)
			case 0:
				return fmt.Errorf("key[%d]=(hex)%x on %s page(%d) needs to be > (found =) than previous element (hex)%x", i, key, kind, id, prev)
			}
		}
		if next != nil && bytes.Compare(key, next) >= 0 {
			return fmt.Errorf("key[%d]=(hex)%x on %s page(%d) needs to be < than key of the next element in ancestor (hex)%x", i, key, kind, id, next)
		}
		return nil
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
	// walk checks the page at id and the pages under it; its keys must be
	// at least lo and below hi (nil: no bound), as bbolt's Check has it. It
	// returns the greatest key under it (a copy; nil without thorough).
	var walk func(id uint64, lo, hi []byte) ([]byte, error)
	walk = func(id uint64, lo, hi []byte) ([]byte, error) {
		if id < 2 {
			return nil, fmt.Errorf("page %d: a meta page in the tree", id)
		}
		flags, n, span, err := header(id)
		if err != nil {
			return nil, err
		}
		if err := mark(id, span); err != nil {
			return nil, err
		}
		switch flags {
		case pageBranch:
			if n == 0 {
				return nil, fmt.Errorf("page %d: a branch page with no elements", id)
			}
			elems, err := read(id, span, pageHeaderSize, int64(n)*branchElemSize)
			if err != nil {
				return nil, err
			}
			children := make([]uint64, n)
			for i := range n {
				children[i] = binary.NativeEndian.Uint64(elems[i*branchElemSize+8:])
			}
			var bounds [][]byte // the keys, kept across the walks below
			if thorough {
				ks, err := keysOf(id, span, elems, n, false)
				if err != nil {
					return nil, err
				}
				for _, k := range ks {
					bounds = append(bounds, bytes.Clone(k))
				}
			}
			var maxKey []byte
			prev := lo
			for i, c := range children {
				var key, next []byte
				if thorough {
					key, next = bounds[i], hi
					if err := keyOrder(id, "branch", i, key, prev, next); err != nil {
						return nil, err
					}
					if i < n-1 {
						next = bounds[i+1]
					}
				}
				if maxKey, err = walk(c, key, next); err != nil {
					return nil, err
				}
				prev = maxKey
			}
			return maxKey, nil
		case pageLeaf:
			// Its sub-buckets: a bucket element's value starts with the
			// bucket's root page (0: an inline bucket, whose page is in
			// the value, and which has no sub-buckets). Each is a tree of
			// its own, its keys unbounded.
			elems, err := read(id, span, pageHeaderSize, int64(n)*leafElemSize)
			if err != nil {
				return nil, err
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
					return nil, fmt.Errorf("page %d: element %d: a bucket value of %d bytes", id, i, vs)
				}
				buckets = append(buckets, bucketElem{pageHeaderSize + int64(i)*leafElemSize + int64(pos) + int64(ks), int64(vs)})
			}
			var maxKey []byte
			if thorough && n > 0 {
				ks, err := keysOf(id, span, elems, n, true)
				if err != nil {
					return nil, err
				}
				prev := lo
				for i, k := range ks {
					if err := keyOrder(id, "leaf", i, k, prev, hi); err != nil {
						return nil, err
					}
					prev = k
				}
				maxKey = bytes.Clone(ks[n-1])
			}
			for _, b := range buckets {
				if b.at+b.size > span {
					return nil, fmt.Errorf("page %d: a bucket value out of the page", id)
				}
				v, err := read(id, span, b.at, 8)
				if err != nil {
					return nil, err
				}
				if r := binary.NativeEndian.Uint64(v); r != 0 {
					roots = append(roots, r)
				}
			}
			for _, r := range roots {
				if _, err := walk(r, nil, nil); err != nil {
					return nil, err
				}
			}
			return maxKey, nil
		default:
			return nil, fmt.Errorf("page %d: flags %#x where the tree needs a branch or leaf page", id, flags)
		}
	}
	if _, err := walk(root, nil, nil); err != nil {
		return err
	}
	// The freelist: its own pages are in use; the pages it lists must not be.
	if fl == noFreelist {
		// bbolt makes it of the pages the tree does not use.
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
	if !thorough {
		return nil
	}
	// A page listed twice is no error: bbolt's freelist (the map kind,
	// which the buffer uses) keeps one of them, and its Check never sees it.
	freed := make([]bool, hw)
	for i := range n {
		if id := binary.NativeEndian.Uint64(ids[i*8:]); id < hw {
			freed[id] = true
		}
	}
	for id := range hw {
		if !seen[id] && !freed[id] {
			return fmt.Errorf("page %d: unreachable unfreed", id)
		}
	}
	return nil
}
