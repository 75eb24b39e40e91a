//go:build !linux

package buffer

import bolt "go.etcd.io/bbolt"

// DropMappedPages is a no-op where madvise is not used.
func (q *Queue) DropMappedPages() error { return nil }

func dropPagesDuring(*bolt.Tx) (stop func()) { return func() {} }

func dropTxPages(*bolt.Tx) {}

func freeBytes(string) (int64, bool) { return 0, false }

func diskSpace(string) (avail, total int64, ok bool) { return 0, 0, false }
