package buffer

import (
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DropMappedPages tells the kernel this process no longer needs the pages
// of the buffer file it has read so far (madvise MADV_DONTNEED on bbolt's
// read-only shared mapping). They stay in the page cache and are mapped
// again, from the cache, when touched; they just stop counting as the
// agent's resident memory. A scan of a large backlog calls it between
// chunks, so draining millions of records does not show the whole file as
// RSS (a systemd MemoryMax= would count it).
func (q *Queue) DropMappedPages() error {
	// Inside a read transaction bbolt holds its mmap lock: the mapping
	// cannot be replaced (remapped) while we advise it.
	return q.view(func(tx *bolt.Tx) error {
		size := tx.Size()
		return adviseDontNeed(tx.DB().Info().Data, size)
	})
}

// adviseDontNeed drops the process's mapping of the first size bytes of
// bbolt's mmap (the caller holds a transaction, so it is not remapped).
func adviseDontNeed(data uintptr, size int64) error {
	if size <= 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}

// dropPagesDuring keeps giving the file's pages back to the page cache while
// a whole-file pass (the self-shrink's copy) runs inside tx, so the pass
// does not leave the whole file resident. The returned func stops it. It
// lags when other processes hold both cores: a pass that can hand pages
// back itself, between its own steps, should (loadState does).
func dropPagesDuring(tx *bolt.Tx) (stop func()) {
	data, size := tx.DB().Info().Data, tx.Size()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = adviseDontNeed(data, size)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		_ = adviseDontNeed(data, size)
	}
}

// dropTxPages gives the pages read so far back to the page cache, from
// inside a transaction (which keeps the mapping in place).
func dropTxPages(tx *bolt.Tx) { _ = adviseDontNeed(tx.DB().Info().Data, tx.Size()) }

// freeBytes is the space an unprivileged process may still use on the file
// system holding dir.
func freeBytes(dir string) (int64, bool) {
	avail, _, ok := diskSpace(dir)
	return avail, ok
}

// diskSpace is freeBytes and the file system's size.
func diskSpace(dir string) (avail, total int64, ok bool) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, false
	}
	return int64(fs.Bavail) * int64(fs.Bsize), int64(fs.Blocks) * int64(fs.Bsize), true
}
