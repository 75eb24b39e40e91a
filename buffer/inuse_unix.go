//go:build unix

package buffer

import (
	"errors"
	"os"
	"syscall"
)

// InUse reports whether a process has the buffer file at path open for
// writing (a running agent: bbolt holds an exclusive lock on it), without
// waiting for the lock. A missing file is not in use.
func InUse(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, nil
}

// heldByReaders reports whether the buffer file at path is locked by
// readers only (shared locks: bbolt's read-only open, which a stopped
// agent's status or deadletter takes), not by a writer (an agent, compact)
// nor by nobody: a writer's open waits for them to finish.
func heldByReaders(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close() // (drops a lock taken below too)
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		return false // free (or not to be told)
	}
	return syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB) == nil
}
