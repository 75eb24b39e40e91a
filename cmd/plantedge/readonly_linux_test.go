package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// A data_dir that does not exist, under a directory on a read-only mount
// (a tmpfs mounted ro here): validate said "this user may not create it
// in … (read-only file system)" and to make it and chown it (mkdir -p …
// && chown -R …), which fails there for root too. It says the file
// system is read-only, and to choose a data_dir on one mounted
// read-write or to remount it. Run as root, where mount is allowed.
func TestValidateSaysADataDirsFileSystemIsReadOnly(t *testing.T) {
	t.Setenv("INVOCATION_ID", "") // not a service systemd started
	dir, ro, key := readOnlySetup(t)
	dataDir := filepath.Join(ro, "data", "plantedge")
	_, errOut, err := runValidate(t, "-c", oneMachineConfig(t, dir, dataDir, key))
	want := "data_dir: " + dataDir + " does not exist, and the file system that would hold it is read-only (" + ro + ": read-only file system): " +
		"the agent could not keep its buffer there (give data_dir a directory on a file system mounted read-write, or remount that one read-write: " +
		"findmnt -T " + ro + " names it; or the kernel remounted it read-only after a disk error: dmesg says)"
	if exitCode(err) != 0 || !strings.Contains(errOut, want) || strings.Contains(errOut, "mkdir -p") || strings.Contains(errOut, "chown") {
		t.Errorf("exit %d, want 0 and\n%s\nand no mkdir nor chown in:\n%s", exitCode(err), want, errOut)
	}
}

// readOnlySetup is the set-up of these tests: a directory for the
// config, a read-only tmpfs (readOnlyTmpfs) and an API key file.
func readOnlySetup(t *testing.T) (dir, ro, key string) {
	t.Helper()
	dir = t.TempDir()
	ro = readOnlyTmpfs(t)
	key = filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, ro, key
}

// readOnlyTmpfs is a tmpfs mounted read-only for the test; skipped where
// mount is not allowed.
func readOnlyTmpfs(t *testing.T) string {
	t.Helper()
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("mount a read-only tmpfs: %v (needs root, and a sandbox that allows it)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(ro, 0); err != nil {
			t.Error(err)
		}
	})
	return ro
}

// run on the same data_dir, outside systemd: its start fails (EROFS, exit
// 78) and it said to mkdir -p and chown it, the hint for the unit's
// sandbox, which fails on a read-only mount for root too. It says what
// validate says. Under systemd it keeps the sandbox's mkdir, chown and
// drop-in (TestRunHintForADataDirOnAReadOnlyFileSystem).
func TestRunSaysADataDirsFileSystemIsReadOnly(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	dir, ro, key := readOnlySetup(t)
	dataDir := filepath.Join(ro, "data", "plantedge")
	err := run([]string{"run", "-c", oneMachineConfig(t, dir, dataDir, key)})
	want := "data_dir " + dataDir + " does not exist, and the file system that would hold it is read-only (" + ro + ": read-only file system): " +
		"the agent could not keep its buffer there (give data_dir a directory on a file system mounted read-write, or remount that one read-write: " +
		"findmnt -T " + ro + " names it; or the kernel remounted it read-only after a disk error: dmesg says)"
	if exitCode(err) != exitSetup || !strings.Contains(fmt.Sprint(err), want) || strings.Contains(fmt.Sprint(err), "mkdir -p") || strings.Contains(fmt.Sprint(err), "chown") {
		t.Errorf("exit %d, want %d and\n%s\nand no mkdir nor chown in:\n%v", exitCode(err), exitSetup, want, err)
	}
}

// run on a data_dir that exists on a read-only mount (the tmpfs's root),
// outside systemd: it named the unit's drop-in (ReadWritePaths=), which
// cannot help there. It says the file system is read-only, as validate
// says it.
func TestRunSaysAnExistingDataDirsFileSystemIsReadOnly(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	dir, ro, key := readOnlySetup(t)
	err := run([]string{"run", "-c", oneMachineConfig(t, dir, ro, key)})
	want := "data_dir " + ro + " is on a file system that is read-only (read-only file system): the agent could not keep its buffer there " +
		"(give data_dir a directory on a file system mounted read-write, or remount that one read-write: findmnt -T " + ro + " names it; " +
		"or the kernel remounted it read-only after a disk error: dmesg says)"
	if exitCode(err) != exitSetup || !strings.Contains(fmt.Sprint(err), want) || strings.Contains(fmt.Sprint(err), "ReadWritePaths") {
		t.Errorf("exit %d, want %d and\n%s\nand no drop-in in:\n%v", exitCode(err), exitSetup, want, err)
	}
}

// run with listen's unix socket in a directory on a read-only mount,
// outside systemd: it named the unit's drop-in (ReadWritePaths=), which
// cannot help there. It says the file system is read-only and how to
// move the socket; validate warns of it.
func TestRunSaysASocketDirectorysFileSystemIsReadOnly(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	dir, ro, key := readOnlySetup(t)
	path := oneMachineConfig(t, dir, filepath.Join(dir, "data"), key)
	y, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(ro, "api.sock")
	listen := regexp.MustCompile(`(?m)^listen: .*$`)
	if !listen.Match(y) {
		t.Fatalf("no listen in:\n%s", y)
	}
	if err := os.WriteFile(path, listen.ReplaceAll(y, []byte("listen: unix:"+sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runValidate(t, "-c", path)
	if warned := "listen: the directory of the socket, " + ro + ", is on a file system that is read-only"; exitCode(err) != 0 || !strings.Contains(errOut, warned) {
		t.Errorf("validate: exit %d, want 0 and %q in:\n%s", exitCode(err), warned, errOut)
	}
	err = run([]string{"run", "-c", path})
	want := "the directory of listen's socket, " + ro + ", is on a file system that is read-only (read-only file system): the agent could not make its socket there " +
		"(give listen a socket in a directory on a file system mounted read-write, or an address such as 127.0.0.1:9464; or remount that one read-write: " +
		"findmnt -T " + ro + " names it)"
	if exitCode(err) != exitSetup || !strings.Contains(fmt.Sprint(err), want) || strings.Contains(fmt.Sprint(err), "ReadWritePaths") {
		t.Errorf("exit %d, want %d and\n%s\nand no drop-in in:\n%v", exitCode(err), exitSetup, want, err)
	}
}
