package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Shrinking the file once a backlog has drained.
//
// bbolt never gives pages back to the filesystem, and it writes its whole
// list of free pages with every commit. After a backlog of 150,000 records
// drained, every one-record commit wrote 88 KB instead of 20 KB
// (TestShrinkAfterDrain; 479 KB after 1,000,000 records), and the file kept
// its peak size until an offline compact. On an edge box with flash
// storage that is wear for nothing, for as long as the plant runs.
//
// So after a commit that leaves little live data (at most shrinkMaxLive:
// pending records, dead letters and meta) and many free pages (at least
// DefaultShrinkMinFree, and at least half of all pages), the committer copies
// the live data into a new file with bbolt's Compact, makes it durable,
// renames it over the old file, makes the rename durable, and reopens: the
// file is back to the size of its data. Nothing is committed while this
// runs, so Appends wait for it (a few ms: the data is small). A crash at any
// point leaves either the old file (and a stray copy that Open removes) or
// the new one, never a mix.

const (
	// DefaultShrinkMinFree is how many bytes of free pages make a drained
	// file worth shrinking.
	DefaultShrinkMinFree = 16 << 20
	// shrinkMaxLive bounds the data copied while Appends wait.
	shrinkMaxLive = 4 << 20
	// shrinkEvery spaces attempts, successful or not.
	shrinkEvery = time.Minute
	// shrinkTxBytes bounds the data the copy puts in one transaction of
	// the new file. In one transaction bbolt holds all of it on the heap
	// twice (copied when the new file's mapping grows, and again in the
	// pages it writes): a drained 96 MiB file with 4 MiB left raised the
	// heap by 11-14 MB and the agent's RSS past 64 MB (BenchmarkShrink:
	// 2.5-3 MB in transactions of this size; the copy is no bigger).
	shrinkTxBytes = 256 << 10
	// shrinkSuffix names the copy while it is built.
	shrinkSuffix = ".shrink"
)

// maybeShrink runs in the committer, between transactions.
func (q *Queue) maybeShrink(cur *state) {
	if q.opts.shrinkMinFree < 0 || cur.used() > shrinkMaxLive || time.Since(q.lastShrink) < q.opts.shrinkEvery {
		return
	}
	bs := q.db.Stats()
	free := int64(bs.FreePageN+bs.PendingPageN) * int64(q.db.Info().PageSize)
	if free < q.opts.shrinkMinFree {
		return
	}
	tx, err := q.db.Begin(false)
	if err != nil {
		return
	}
	highWater := tx.Size() // pages in use or free; the file may reach past them
	_ = tx.Rollback()
	fi, err := os.Stat(q.path)
	if err != nil || free < highWater/2 {
		return
	}
	t0 := time.Now()
	q.lastShrink = t0
	if err := q.shrink(fi); err != nil {
		q.log.Warn("buffer: shrinking the drained file failed; it keeps its size", "err", err, "path", q.path)
		return
	}
	after := int64(0)
	if fi2, err := os.Stat(q.path); err == nil {
		after = fi2.Size()
	}
	q.shrinks.Add(1)
	q.log.Info("buffer: backlog drained, file shrunk", "path", q.path,
		"bytes_before", fi.Size(), "bytes_after", after, "took", time.Since(t0).Round(time.Millisecond))
}

// shrink replaces the file with a compact copy of its data. On an error up
// to the rename the old file stays in use. If the rename cannot be made
// durable, or the file cannot be opened again, the queue is broken (every
// request fails with the reason) rather than acknowledge records a power
// cut could take back; the agent stops and its restart opens the file anew.
func (q *Queue) shrink(fi os.FileInfo) error {
	tmp := q.path + shrinkSuffix
	if err := q.copyDropping(fi, tmp); err != nil {
		return err
	}
	q.hook("copied")
	// Hold the old file open across the rename: the filesystem then frees
	// its blocks when this handle is closed, after the swap and outside the
	// committer, not inside the rename (70–80 ms for a 258 MB file on this
	// ext4 mounted with discard, with every Append waiting).
	if old, err := os.Open(q.path); err == nil {
		defer func() { go old.Close() }()
	}
	q.dbMu.Lock() // no reader inside a transaction of the old file
	defer q.dbMu.Unlock()
	if err := q.db.Close(); err != nil {
		_ = os.Remove(tmp)
		return q.reopen(fmt.Errorf("close before swap: %w", err))
	}
	if err := os.Rename(tmp, q.path); err != nil {
		_ = os.Remove(tmp)
		return q.reopen(fmt.Errorf("rename %s: %w", tmp, err))
	}
	q.hook("renamed")
	// The rename must be durable before anything is committed to the new
	// file, or a power cut could bring the old file back without it.
	if err := syncDir(filepath.Dir(q.path)); err != nil {
		q.fail(fmt.Errorf("buffer file %s replaced by its compact copy but the directory could not be synced: %w", q.path, err))
		return q.reopen(err)
	}
	return q.reopen(nil)
}

// copyDropping writes the compact copy of the open file to tmp, giving the
// old file's mapped pages back to the page cache while the copy reads them
// (the committer runs it: no write transaction remaps meanwhile).
func (q *Queue) copyDropping(fi os.FileInfo, tmp string) error {
	tx, err := q.db.Begin(false)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	defer dropPagesDuring(tx)()
	return writeCopy(q.db, fi, tmp, shrinkTxBytes)
}

// checkFile makes sure the path still names the file the queue has open.
// A file deleted while in use (a clean-up script, rm by mistake) lives on
// only as long as this process: records acknowledged into it would be lost
// at the next restart. It runs in the committer before every commit and
// every few seconds when idle; when the path is gone, or holds another
// file (moved aside as <path>.replaced-<UTC time>), the open file's data
// is written back to the path and the queue goes on there. While that
// fails (the disk full, the directory gone) it returns why, and nothing is
// committed: a commit into the unlinked file would be acknowledged and
// lost. It tries again at most every Options.fileCheckEvery.
func (q *Queue) checkFile() error {
	if q.openFile == nil || q.opts.ReadOnly {
		return nil
	}
	if q.fileLost != nil && time.Since(q.fileLostAt) < q.opts.fileCheckEvery {
		return q.fileLost
	}
	fi, err := os.Stat(q.path)
	if err == nil && os.SameFile(fi, q.openFile) {
		q.fileLost = nil
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) && q.fileLost == nil {
		return nil // cannot tell (the directory unreadable for a moment?)
	}
	q.fileLostAt = time.Now()
	aside := ""
	if err == nil {
		aside = fmt.Sprintf("%s.replaced-%s", q.path, time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(q.path, aside); rerr != nil {
			return q.lostFile(fmt.Errorf("the buffer file %s was replaced while in use and the other file cannot be moved aside: %w", q.path, rerr))
		}
	}
	q.log.Error("BUFFER FILE DELETED OR REPLACED WHILE IN USE: writing its data back", "path", q.path, "other_file_moved_to", aside)
	if err := q.shrink(q.openFile); err != nil {
		return q.lostFile(fmt.Errorf("the buffer file %s was deleted or replaced while in use and cannot be written back: %w", q.path, err))
	}
	q.fileLost = nil
	q.restored.Add(1)
	return nil
}

// lostFile records (and logs, once) that the buffer file is not at its
// path and cannot be put back, and returns err for the requests waiting.
func (q *Queue) lostFile(err error) error {
	if q.fileLost == nil {
		q.log.Error("buffer: nothing is committed until the buffer file is back at its path", "err", err)
	}
	q.fileLost = err
	return err
}

// reopen opens q.path again after a shrink attempt closed it, and returns
// cause. If the file cannot be opened the queue is broken: every request
// fails with the reason until the agent restarts and Open deals with it.
func (q *Queue) reopen(cause error) error {
	db, err := q.openBolt()
	if err != nil {
		q.fail(fmt.Errorf("reopen buffer file %s after shrinking: %w", q.path, err))
		return errors.Join(cause, err)
	}
	q.db, q.backed, q.backTriedSize = db, 0, 0 // openBolt took the new file's openFile
	return cause
}

type brokenError struct{ err error }

// fail breaks the queue for good: requests fail with err from now on.
func (q *Queue) fail(err error) {
	if q.broken.CompareAndSwap(nil, &brokenError{err}) {
		q.log.Error("buffer: cannot write any more; restart to reopen the file", "err", err)
		close(q.failed)
	}
}

// Failed is closed when the queue can no longer write: after shrinking, the
// new file could not be opened or its rename made durable. Every request
// fails with Err from then on; the agent stops so that its restart opens
// the file anew.
func (q *Queue) Failed() <-chan struct{} { return q.failed }

// Err is the reason Failed was closed, or nil.
func (q *Queue) Err() error {
	if b := q.broken.Load(); b != nil {
		return b.err
	}
	return nil
}

func (q *Queue) hook(stage string) {
	if q.opts.shrinkHook != nil {
		q.opts.shrinkHook(stage)
	}
}
