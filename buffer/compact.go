package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Compact copies the live data of the buffer file src into a new file dst
// (which must not exist), with full pages, so dst is as small as the data
// allows. Run it while the agent is stopped.
func Compact(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("compact %s: destination %s exists", src, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact %s: %w", src, err)
	}
	in, err := boltOpen(src, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("compact %s: open source: %w", src, err)
	}
	defer in.Close()
	if err := checkTree(in, src); err != nil {
		return fmt.Errorf("compact %s: %w", src, err)
	}
	if err := copyCompact(in, dst, 64<<20); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("compact %s: %w", src, err)
	}
	return nil
}

// CompactFile replaces the buffer file at path by a compact copy of its
// data, keeping its owner and mode, and returns the sizes before and after.
// Run it while the agent is stopped (the running agent shrinks its file by
// itself once a backlog has drained: see shrink.go).
func CompactFile(path string) (before, after int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	// Read-write for its exclusive lock: a second compact, or an agent
	// started meanwhile, waits for this one (and then opens the new file:
	// see boltOpen) instead of working on the file this one replaces.
	in, err := boltOpen(path, &bolt.Options{Timeout: 500 * time.Millisecond, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		err = ErrInUse
	}
	if err != nil && !errors.Is(err, ErrInUse) && !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) && !systemError(err) {
		// bbolt cannot open it (both meta pages damaged, not a bbolt
		// file): the agent's start moves it aside, as for a damaged tree.
		return 0, 0, fmt.Errorf("compact %s: open: %w: the file is damaged and cannot be copied; start the agent, which moves it aside and starts a fresh one", path, &corruptError{err})
	}
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: open: %w", path, err)
	}
	if err := checkTree(in, path); err != nil {
		_ = in.Close()
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	tmp := path + compactSuffix
	err = writeCopy(in, fi, tmp, 64<<20)
	_ = in.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	nfi, err := os.Stat(tmp)
	if err == nil {
		err = swapIn(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	return fi.Size(), nfi.Size(), nil
}

// checkTree refuses to copy a file whose page tree is damaged (a page
// pointing back at an ancestor, a free list naming live pages): the copy
// would follow the cycle until memory ran out. The agent's start moves
// such a file aside; compact says so instead of copying it.
func checkTree(db *bolt.DB, path string) error {
	err := checkTreeOf(db, path, false)
	if ce := (*corruptError)(nil); errors.As(err, &ce) {
		return fmt.Errorf("%w: the file is damaged and cannot be copied; start the agent, which moves it aside and starts a fresh one", err)
	}
	return err
}

// ErrInUse means another process holds the buffer file's lock.
var ErrInUse = errors.New("the buffer file is in use by another process (the agent, another plantedge compact, or a plantedge status or deadletter reading it)")

// boltOpen opens path with bbolt once it holds the lock of the file that is
// at path then: a file replaced while this waited for its lock (compact
// renames its copy over the old one) is an unlinked file, whose writes
// nobody would ever read, so it opens the new one instead.
func boltOpen(path string, o *bolt.Options) (*bolt.DB, error) {
	for range 5 {
		// The file at path before and after the open is the one opened
		// when they are the same: a rename always puts a new file there.
		before, berr := os.Stat(path)
		db, err := bolt.Open(path, 0o600, o)
		if err != nil {
			return nil, err
		}
		after, aerr := os.Stat(path)
		if berr != nil || aerr != nil || os.SameFile(before, after) {
			return db, nil
		}
		_ = db.Close()
	}
	return nil, fmt.Errorf("open %s: the file was replaced again and again while waiting for its lock", path)
}

// compactSuffix names the copy CompactFile builds.
const compactSuffix = ".compact"

// writeCopy writes a durable compact copy of src's data to tmp (replacing a
// leftover), with the owner and mode of like: run as root, the copy must
// still be the service user's.
func writeCopy(src *bolt.DB, like fs.FileInfo, tmp string, txMaxBytes int64) error {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err := copyCompact(src, tmp, txMaxBytes)
	if st, ok := like.Sys().(*syscall.Stat_t); ok && err == nil && (int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid()) {
		if cerr := os.Chown(tmp, int(st.Uid), int(st.Gid)); cerr != nil {
			err = fmt.Errorf("keep the owner of the buffer file: %w", cerr)
		}
	}
	if err == nil {
		err = os.Chmod(tmp, like.Mode().Perm())
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// copyCompact writes the data of src into a new file dst, in transactions
// of about txMaxBytes (0: one), and makes it durable.
func copyCompact(src *bolt.DB, dst string, txMaxBytes int64) error {
	out, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if err := bolt.Compact(out, src, txMaxBytes); err != nil {
		_ = out.Close()
		return fmt.Errorf("copy into %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return out.Close()
}

// swapIn renames tmp over path and makes the rename durable.
func swapIn(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
