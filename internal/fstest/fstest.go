// Package fstest has helpers for tests of a full or small disk: a tmpfs of
// a given size mounted for the test.
package fstest

import (
	"os"
	"os/exec"
	"testing"
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
