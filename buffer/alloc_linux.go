package buffer

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// backFile gives the file's whole length disk blocks (fallocate). bbolt
// grows its file with ftruncate, which reserves none: the stretch past the
// pages written so far is a hole, and writing there on a full disk fails
// (the disk probe: an 8.1 MiB file on a full 4 MiB tmpfs, its
// acknowledgements failing with ENOSPC). The full-disk handling holds the
// buffer to "the pages its file already has"; backed, they are there.
// Committer only (and Open). A file system without fallocate is left as it
// is; one without room now is tried again after the next commit.
func (q *Queue) backFile() {
	if q.opts.ReadOnly || q.openFile == nil {
		return
	}
	fi, err := os.Stat(q.path)
	if err != nil || fi.Size() <= q.backed || !os.SameFile(fi, q.openFile) {
		return // not grown; or not the file q.db has open (checkFile's)
	}
	f, err := os.OpenFile(q.path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if cfi, err := f.Stat(); err != nil || !os.SameFile(cfi, q.openFile) {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, q.backed, fi.Size()-q.backed)
	switch {
	case err == nil, errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		q.backed, q.backFailed = fi.Size(), false
	case !q.backFailed:
		q.backFailed = true
		q.log.Warn("buffer: could not give the file's free pages disk blocks (the disk full?); tried again after the next commit",
			"err", err, "file_bytes", fi.Size(), "backed_bytes", q.backed)
	}
}
