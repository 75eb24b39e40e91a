package buffer

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

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
	page := func(id uint64) ([]byte, error) {
		if id >= hw {
			return nil, fmt.Errorf("page %d: beyond the file's %d pages", id, hw)
		}
		hdr := make([]byte, pageHeaderSize)
		if _, err := f.ReadAt(hdr, int64(id)*ps); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		over := uint64(binary.LittleEndian.Uint32(hdr[12:]))
		if got := binary.LittleEndian.Uint64(hdr); got != id {
			return nil, fmt.Errorf("page %d: says it is page %d", id, got)
		}
		if id+over >= hw {
			return nil, fmt.Errorf("page %d: its %d overflow pages reach beyond the file's %d pages", id, over, hw)
		}
		b := make([]byte, int64(over+1)*ps)
		if _, err := f.ReadAt(b, int64(id)*ps); err != nil && err != io.EOF {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		return b, nil
	}
	// The meta page of this snapshot: the one with its transaction id.
	var meta []byte
	for id := range uint64(2) {
		b, err := page(id)
		if err != nil {
			return err
		}
		if binary.LittleEndian.Uint64(b[metaTxIDOffset:]) == uint64(tx.ID()) {
			meta = b
		}
	}
	if meta == nil {
		return fmt.Errorf("no meta page of transaction %d", tx.ID())
	}
	seen := make([]bool, hw)
	seen[0], seen[1] = true, true
	mark := func(id uint64, b []byte) error {
		for i := range uint64(len(b)) / uint64(ps) {
			if seen[id+i] {
				return fmt.Errorf("page %d: referenced twice (a cycle in the tree, or a page with two parents)", id+i)
			}
			seen[id+i] = true
		}
		return nil
	}
	var walk func(id uint64) error
	// leafBuckets walks the sub-buckets of the leaf page in b.
	leafBuckets := func(b []byte, owner uint64) error {
		n := int(binary.LittleEndian.Uint16(b[10:]))
		if pageHeaderSize+n*leafElemSize > len(b) {
			return fmt.Errorf("page %d: %d elements do not fit", owner, n)
		}
		for i := range n {
			e := pageHeaderSize + i*leafElemSize
			if binary.LittleEndian.Uint32(b[e:])&leafBucket == 0 {
				continue
			}
			pos, ks, vs := binary.LittleEndian.Uint32(b[e+4:]), binary.LittleEndian.Uint32(b[e+8:]), binary.LittleEndian.Uint32(b[e+12:])
			v := uint64(e) + uint64(pos) + uint64(ks)
			if vs < bucketHdrSize || v+uint64(vs) > uint64(len(b)) {
				return fmt.Errorf("page %d: element %d: a bucket value out of the page", owner, i)
			}
			// A root of 0 is an inline bucket: its page is in the value,
			// and an inline bucket has no sub-buckets.
			if root := binary.LittleEndian.Uint64(b[v:]); root != 0 {
				if err := walk(root); err != nil {
					return err
				}
			}
		}
		return nil
	}
	walk = func(id uint64) error {
		if id < 2 {
			return fmt.Errorf("page %d: a meta page in the tree", id)
		}
		b, err := page(id)
		if err != nil {
			return err
		}
		if err := mark(id, b); err != nil {
			return err
		}
		switch flags := binary.LittleEndian.Uint16(b[8:]); flags {
		case pageBranch:
			n := int(binary.LittleEndian.Uint16(b[10:]))
			if n == 0 || pageHeaderSize+n*branchElemSize > len(b) {
				return fmt.Errorf("page %d: a branch page with %d elements", id, n)
			}
			for i := range n {
				if err := walk(binary.LittleEndian.Uint64(b[pageHeaderSize+i*branchElemSize+8:])); err != nil {
					return err
				}
			}
			return nil
		case pageLeaf:
			return leafBuckets(b, id)
		default:
			return fmt.Errorf("page %d: flags %#x where the tree needs a branch or leaf page", id, flags)
		}
	}
	if err := walk(binary.LittleEndian.Uint64(meta[metaRootOffset:])); err != nil {
		return err
	}
	// The freelist: its own pages are in use; the pages it lists must not be.
	fl := binary.LittleEndian.Uint64(meta[metaFreeOffset:])
	if fl == noFreelist {
		return nil
	}
	if fl < 2 {
		return fmt.Errorf("freelist page %d: a meta page", fl)
	}
	b, err := page(fl)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if err := mark(fl, b); err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	n, ids := uint64(binary.LittleEndian.Uint16(b[10:])), b[pageHeaderSize:]
	if n == freelistOverMax {
		n, ids = binary.LittleEndian.Uint64(ids), ids[8:]
	}
	if n > uint64(len(ids))/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit", fl, n)
	}
	for i := range n {
		if id := binary.LittleEndian.Uint64(ids[i*8:]); id < hw && seen[id] {
			return fmt.Errorf("freelist page %d lists page %d, which is in use (page already freed)", fl, id)
		}
	}
	return nil
}
