// Package fstest has helpers for tests of a full, small or stalled disk: a
// tmpfs of a given size, or a file system that can be frozen, mounted for
// the test.
package fstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Tmpfs mounts a tmpfs of size (mount's notation: "8m") on dir, which must
// exist, and unmounts it when the test ends. The test is skipped where it
// cannot be: not root, or no mount here.
func Tmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// Freezable mounts a small ext4 file system (a loop device) on dir, which
// must exist, and returns freeze and thaw: frozen (fsfreeze), its writes
// block, as on a disk that stopped completing them (a dying SD card, a hung
// network file system). thaw undoes a freeze; a freeze is thawed at the
// test's end too, before what was registered with t.Cleanup earlier (an
// agent's stop waits for its write), and a minute on whatever becomes of
// the test. The test is skipped where it cannot be: not root, no loop
// device or ext4 here, no fsfreeze.
func Freezable(t testing.TB, dir string) (freeze, thaw func()) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount and freeze a file system")
	}
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("cannot make an ext4 file system here: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop device here: %v %s", err, out)
	}
	var frozen atomic.Bool
	var failsafe *time.Timer
	unfreeze := func() error {
		var err error
		for range 5 { // (tried again: a thaw left undone hangs the test binary's exit)
			var out []byte
			if out, err = exec.Command("fsfreeze", "-u", dir).CombinedOutput(); err == nil {
				return nil
			}
			err = fmt.Errorf("fsfreeze -u: %v %s", err, out)
			time.Sleep(100 * time.Millisecond)
		}
		return err
	}
	thaw = func() {
		if frozen.CompareAndSwap(true, false) {
			failsafe.Stop()
			if err := unfreeze(); err != nil {
				t.Error(err)
			}
		}
	}
	freeze = func() {
		t.Helper()
		if out, err := exec.Command("fsfreeze", "-f", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot freeze a file system here: %v %s", err, out)
		}
		frozen.Store(true)
		// A file system left frozen holds every process that writes to it
		// (the test binary too, in uninterruptible sleep, past go test's
		// timeout): whatever becomes of the test, it is thawed a minute
		// on.
		failsafe = time.AfterFunc(time.Minute, func() {
			if frozen.CompareAndSwap(true, false) {
				_ = unfreeze()
			}
		})
		t.Cleanup(thaw) // before the agent's stop, registered earlier
	}
	t.Cleanup(func() { thaw(); _ = exec.Command("umount", "-l", dir).Run() })
	return freeze, thaw
}
