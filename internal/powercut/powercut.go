//go:build linux && !386 && !arm && !mips && !mipsle

// Package powercut is a FUSE filesystem for tests that keeps, at a power
// cut, only what a disk must keep: file data as of each file's last fsync or
// fdatasync, and directory entries as of the directory's last fsync.
//
// A SIGKILL leaves the page cache behind, so it never shows a missing sync;
// this filesystem does. Writes since a file's last sync survive a cut in 512
// byte sectors: each such sector holds its synced content or the content
// after any one of the writes since (writeback may have put an earlier one
// on the disk), at random, so pages tear. The file's size changes since its
// last sync survive as a random prefix (after O_TRUNC and a write, the file
// may come back empty). Creates, renames and unlinks since the directory's
// last sync survive as a random prefix too, in the order they were made (a
// journal's order); any of them, or none. Punching holes is refused.
//
// One flat directory, regular files only: enough for a data directory. The
// test process serves the filesystem and must not itself map a file in it
// (bbolt does: no buffer may be opened there in the test process). A page
// fault on such a mapping waits for this process's own FUSE server; if a
// garbage collection meanwhile waits for every processor to stop or reach
// a safe point, it waits for the faulting thread too, which is not in a
// system call and cannot answer, while the server goroutine that would end
// the fault gets no processor: the process hangs, and cannot even exit (a
// thread waiting on a request its server has read is not killable; only
// writing 1 to the connection's abort file under /sys/fs/fuse/connections
// frees it). Plain system calls on the mount are safe (a thread in a system
// call gives up its processor). Children use the mount; the test reads the
// files with FS.Files, takes the State a cut returns, or writes that to a
// real directory with State.WriteDir.
package powercut

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// sector is the unit in which unsynced writes survive a cut.
const sector = 512

// State is a directory's regular files by name.
type State map[string][]byte

// ReadDir reads the regular files of dir (subdirectories are not taken).
func ReadDir(dir string) (State, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	st := State{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		st[e.Name()] = b
	}
	return st, nil
}

// WriteDir makes dir hold exactly the files of s.
func (s State) WriteDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range s {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Names lists the files of s in order.
func (s State) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Stats counts what the filesystem was asked to do.
type Stats struct {
	Writes, FileSyncs, DirSyncs, Renames, Creates, Unlinks int
}

// FS is one mount of the filesystem.
type FS struct {
	mountpoint string
	server     *fuse.Server

	mu  sync.Mutex
	cut bool
	// syncsLeft: with failSyncs, how many more fsyncs succeed before every
	// one fails with EIO (a disk error found at flush; writes still work).
	failSyncs bool
	syncsLeft int
	// metaFail (FailSyncsAfterMetaWrite): the first fsync after a write
	// at an offset below metaEnd, and every one after, fail.
	metaFail, metaWritten bool
	metaEnd               int64
	names                 map[string]*file // what the directory holds now
	durable               map[string]*file // what it held at its last fsync
	ops                   []nsOp           // namespace changes since then, in order
	stats                 Stats
}

type nsOp struct {
	name, to string // to: a rename's new name; "" for create/unlink
	node     *file  // create: the new file; unlink: nil
}

// Mount serves a directory holding the files of initial, all of them
// durable, at mountpoint (an existing empty directory). It needs /dev/fuse
// and the right to mount (root, or fusermount3).
func Mount(mountpoint string, initial State) (*FS, error) {
	f := &FS{mountpoint: mountpoint, names: map[string]*file{}}
	for name, b := range initial {
		n := &file{fsys: f, mode: 0o600}
		n.data = append([]byte(nil), b...)
		n.synced = append([]byte(nil), b...)
		f.names[name] = n
	}
	f.durable = maps.Clone(f.names)
	zero := time.Duration(0)
	srv, err := fs.Mount(mountpoint, &root{fsys: f}, &fs.Options{
		// No kernel caching of names or attributes: a child sees every change
		// at once, and the cut state is all in this process.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:        "powercut",
			Name:          "powercut",
			DirectMount:   true,
			DisableXAttrs: true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("powercut: mount %s: %w", mountpoint, err)
	}
	f.server = srv
	return f, nil
}

// Cut is the power cut: from now on every operation fails with EIO, and
// what survives is returned. rng decides which unsynced changes survive.
func (f *FS) Cut(rng *rand.Rand) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	names := maps.Clone(f.durable)
	for _, op := range f.ops[:rng.IntN(len(f.ops)+1)] {
		op.apply(names)
	}
	st := State{}
	for name, n := range names {
		st[name] = n.survivor(rng)
	}
	return st
}

// Files returns the directory's files as reads see them now (nothing is
// cut): a copy, for a test that must not read them through the mount.
func (f *FS) Files() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := State{}
	for name, n := range f.names {
		st[name] = bytes.Clone(n.data)
	}
	return st
}

// FailSyncsAfterMetaWrite makes the first fsync after a write that
// begins below offset end (bbolt's meta pages: 2 x its page size), and
// every fsync after it, fail with EIO: a disk error found when a commit's
// meta page is flushed, whatever syncs (a file's growth) come before.
func (f *FS) FailSyncsAfterMetaWrite(end int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metaFail, f.metaWritten, f.metaEnd = true, false, end
}

// FailSyncsAfter makes every fsync fail with EIO after the next n, while
// writes and reads go on working: a disk error found when the data is
// flushed.
func (f *FS) FailSyncsAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSyncs, f.syncsLeft = true, n
}

// Stats tells what the filesystem has been asked to do so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Unmount unmounts; every process using the mount must have ended.
func (f *FS) Unmount() error {
	var err error
	for range 50 { // the kernel may still hold the last release for a moment
		if err = f.server.Unmount(); err == nil {
			f.server.Wait()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("powercut: unmount %s: %w", f.mountpoint, err)
}

func (op nsOp) apply(names map[string]*file) {
	switch {
	case op.to != "":
		if n, ok := names[op.name]; ok {
			delete(names, op.name)
			names[op.to] = n
		}
	case op.node != nil:
		names[op.name] = op.node
	default:
		delete(names, op.name)
	}
}

// Available tells why a mount cannot work here, or nil.
func Available() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse: %w", err)
	}
	return nil
}

// Unavailable ends a test that cannot use FUSE (err says why): skipped,
// except under CI, which has FUSE and root, where it fails.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("power cut needs FUSE (/dev/fuse, root): %v", err)
	}
	t.Skipf("power cut needs FUSE: %v", err)
}

type root struct {
	fs.Inode
	fsys *FS
}

var (
	_ fs.NodeOnAdder   = (*root)(nil)
	_ fs.NodeCreater   = (*root)(nil)
	_ fs.NodeUnlinker  = (*root)(nil)
	_ fs.NodeRenamer   = (*root)(nil)
	_ fs.NodeFsyncer   = (*root)(nil)
	_ fs.NodeGetattrer = (*root)(nil)
	_ fs.NodeMkdirer   = (*root)(nil)
	_ fs.NodeStatfser  = (*root)(nil)
)

// Statfs tells of a large empty disk (free-space checks see plenty).
func (r *root) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	out.Blocks, out.Bfree, out.Bavail = 1<<28, 1<<28, 1<<28
	out.Files, out.Ffree = 1<<20, 1<<20
	return 0
}

func (r *root) OnAdd(ctx context.Context) {
	for name, n := range r.fsys.names {
		r.AddChild(name, r.NewPersistentInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

func (r *root) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	return 0
}

func (r *root) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM // one flat directory
}

func (r *root) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	f := r.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return nil, nil, 0, syscall.EIO
	}
	n := &file{fsys: f, mode: mode & 0o7777}
	f.names[name] = n
	f.ops = append(f.ops, nsOp{name: name, node: n})
	f.stats.Creates++
	n.attr(&out.Attr)
	return r.NewPersistentInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG}), nil, 0, 0
}

func (r *root) Unlink(ctx context.Context, name string) syscall.Errno {
	f := r.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	if _, ok := f.names[name]; !ok {
		return syscall.ENOENT
	}
	delete(f.names, name)
	f.ops = append(f.ops, nsOp{name: name})
	f.stats.Unlinks++
	return 0
}

func (r *root) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := r.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	if newParent.EmbeddedInode() != r.EmbeddedInode() || flags != 0 {
		return syscall.EINVAL
	}
	n, ok := f.names[name]
	if !ok {
		return syscall.ENOENT
	}
	delete(f.names, name)
	f.names[newName] = n
	f.ops = append(f.ops, nsOp{name: name, to: newName})
	f.stats.Renames++
	return 0
}

// Fsync on the directory (fsyncdir) makes its entries durable.
func (r *root) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	f := r.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	f.durable = maps.Clone(f.names)
	f.ops = nil
	f.stats.DirSyncs++
	return 0
}

type file struct {
	fs.Inode
	fsys *FS
	mode uint32

	// Guarded by fsys.mu.
	data   []byte // what reads see
	synced []byte // what its last sync made durable
	// versions holds, per sector written since the last sync, its content
	// after each of those writes, in order: a cut may leave any of them.
	versions map[int][][]byte
	sizes    []int // the file's sizes since the last sync, in order
}

var (
	_ fs.NodeOpener    = (*file)(nil)
	_ fs.NodeReader    = (*file)(nil)
	_ fs.NodeWriter    = (*file)(nil)
	_ fs.NodeGetattrer = (*file)(nil)
	_ fs.NodeSetattrer = (*file)(nil)
	_ fs.NodeFsyncer   = (*file)(nil)
	_ fs.NodeFlusher   = (*file)(nil)
	_ fs.NodeAllocater = (*file)(nil)
)

func (n *file) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | n.mode
	a.Size = uint64(len(n.data))
	a.Blocks = (a.Size + 511) / 512
	a.Nlink = 1
}

func (n *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return nil, 0, syscall.EIO
	}
	if flags&syscall.O_TRUNC != 0 { // (the kernel sends a size setattr instead)
		n.resize(0)
	}
	return nil, 0, 0
}

func (n *file) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	n.attr(&out.Attr)
	return 0
}

func (n *file) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	if sz, ok := in.GetSize(); ok {
		n.resize(int(sz))
	}
	if m, ok := in.GetMode(); ok {
		n.mode = m & 0o7777
	}
	n.attr(&out.Attr)
	return 0
}

func (n *file) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return nil, syscall.EIO
	}
	if off >= int64(len(n.data)) {
		return fuse.ReadResultData(nil), 0
	}
	m := copy(dest, n.data[off:])
	return fuse.ReadResultData(dest[:m]), 0
}

func (n *file) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return 0, syscall.EIO
	}
	end := int(off) + len(data)
	if end > len(n.data) {
		n.resize(end)
	}
	copy(n.data[off:], data)
	n.wrote(int(off), end)
	f.stats.Writes++
	if f.metaFail && off < f.metaEnd {
		f.metaWritten = true
	}
	return uint32(len(data)), 0
}

// Allocate supports plain allocation (and KEEP_SIZE); punching holes or
// zeroing ranges is refused rather than reported done and not done.
func (n *file) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	const keepSize = 1 // FALLOC_FL_KEEP_SIZE
	switch {
	case mode&^keepSize != 0:
		return syscall.EOPNOTSUPP
	case mode&keepSize == 0 && int(off+size) > len(n.data):
		n.resize(int(off + size))
	}
	return 0
}

func (n *file) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

// Fsync (fsync and fdatasync alike) makes the file's data and size durable.
func (n *file) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	f := n.fsys
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return syscall.EIO
	}
	if f.metaFail && f.metaWritten {
		f.failSyncs, f.syncsLeft = true, 0
	}
	if f.failSyncs {
		if f.syncsLeft == 0 {
			return syscall.EIO
		}
		f.syncsLeft--
	}
	n.synced = bytes.Clone(n.data)
	n.versions, n.sizes = nil, nil
	f.stats.FileSyncs++
	return 0
}

func (n *file) resize(size int) {
	if size == len(n.data) {
		return
	}
	if size < len(n.data) {
		n.data = n.data[:size:size]
	} else {
		d := make([]byte, size, size+size/4)
		copy(d, n.data)
		n.data = d
	}
	n.sizes = append(n.sizes, size)
}

// wrote records the content of the sectors [lo, hi) touches, as they are
// now.
func (n *file) wrote(lo, hi int) {
	if n.versions == nil {
		n.versions = map[int][][]byte{}
	}
	for s := lo / sector; s*sector < hi; s++ {
		v := bytes.Clone(n.data[s*sector : min((s+1)*sector, len(n.data))])
		n.versions[s] = append(n.versions[s], v)
	}
}

// survivor is the file's content after a cut. Its size is the synced one
// or any it had since, in order (a prefix of its size changes survived);
// bytes beyond the smallest size along the way read as zeros. Each sector
// written since the last sync holds its synced content or the content of
// any one of the writes since (writeback may have put an earlier one on
// the disk), torn pages included.
func (n *file) survivor(rng *rand.Rand) []byte {
	k := rng.IntN(len(n.sizes) + 1)
	size, low := len(n.synced), len(n.synced)
	for _, sz := range n.sizes[:k] {
		size, low = sz, min(low, sz)
	}
	out := make([]byte, size)
	copy(out, n.synced[:min(len(n.synced), low)])
	sectors := make([]int, 0, len(n.versions))
	for s := range n.versions {
		sectors = append(sectors, s)
	}
	sort.Ints(sectors) // the same rng draws give the same result
	for _, s := range sectors {
		vs := n.versions[s]
		i := rng.IntN(len(vs) + 1)
		if i == 0 {
			continue // the synced content (or zeros)
		}
		if lo := s * sector; lo < size {
			copy(out[lo:min(lo+sector, size)], vs[i-1])
		}
	}
	return out
}
