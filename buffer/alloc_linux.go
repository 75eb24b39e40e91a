package buffer

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// backMargin is the free space backFile leaves on the file system: it
// never takes the disk's last space (the journal, the OS and the reserve
// file need it), and a file system that fails a fallocate part-way keeps
// what it took (ext4, XFS).
const backMargin = 4 * diskReserve

// backFile gives the file's length disk blocks (fallocate), as far as the
// disk has room to spare. bbolt grows its file with ftruncate, which
// reserves none: the stretch past the pages written so far is a hole, and
// writing there on a full disk fails (the disk probe: an 8.1 MiB file on
// a full 4 MiB tmpfs, its acknowledgements failing with ENOSPC). The
// full-disk handling holds the buffer to "the pages its file already has";
// backed, they are there. What the disk cannot spare now is tried again
// when the file grows or a file check is due — not at every commit (the
// review: a failing fallocate at each commit doubled commit latency, and
// one that asked for the whole growth took an ext4 disk to 0 bytes free).
// Committer only (and Open). A file system without fallocate is left as it
// is.
func (q *Queue) backFile() {
	if q.opts.ReadOnly || q.openFile == nil {
		return
	}
	fi, err := os.Stat(q.path)
	if err != nil || fi.Size() <= q.backed || !os.SameFile(fi, q.openFile) {
		return // not grown; or not the file q.db has open (checkFile's)
	}
	if fi.Size() == q.backTriedSize && time.Since(q.backTriedAt) < q.opts.fileCheckEvery {
		return
	}
	q.backTriedSize, q.backTriedAt = fi.Size(), time.Now()
	n := fi.Size() - q.backed
	if avail, ok := freeBytes(filepath.Dir(q.path)); ok {
		n = min(n, avail-backMargin)
	}
	if n <= 0 {
		return
	}
	f, err := os.OpenFile(q.path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if cfi, err := f.Stat(); err != nil || !os.SameFile(cfi, q.openFile) {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, q.backed, n)
	switch {
	case err == nil:
		q.backed += n
		q.backFailed = false
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		q.backed = fi.Size() // nothing to do on this file system
	case !q.backFailed:
		q.backFailed = true
		q.log.Warn("buffer: could not give the file's free pages disk blocks; tried again later",
			"err", err, "file_bytes", fi.Size(), "backed_bytes", q.backed)
	}
}
