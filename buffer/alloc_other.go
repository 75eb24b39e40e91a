//go:build !linux

package buffer

// backFile gives the file's whole length disk blocks: on Linux only.
func (q *Queue) backFile() {}
