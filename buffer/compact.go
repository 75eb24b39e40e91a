package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compact copies the live data of the buffer file src into a new file dst
// (which must not exist), with full pages, so dst is as small as the data
// allows. Run it while the agent is stopped; then replace src with dst.
func Compact(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("compact %s: destination %s exists", src, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact %s: %w", src, err)
	}
	in, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("compact %s: open source: %w", src, err)
	}
	defer in.Close()
	out, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return fmt.Errorf("compact %s: create %s: %w", src, dst, err)
	}
	if err := bolt.Compact(out, in, 64<<20); err != nil {
		_ = out.Close()
		_ = os.Remove(dst)
		return fmt.Errorf("compact %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		_ = os.Remove(dst)
		return fmt.Errorf("compact %s: sync %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("compact %s: close %s: %w", src, dst, err)
	}
	return nil
}
