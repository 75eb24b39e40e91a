//go:build !unix

package buffer

// InUse cannot tell without flock; it says no.
func InUse(path string) (bool, error) { return false, nil }

// heldByReaders cannot tell without flock; it says no.
func heldByReaders(path string) bool { return false }
