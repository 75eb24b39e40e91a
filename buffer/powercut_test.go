//go:build linux

package buffer

import (
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/plantedge/plantedge/internal/powercut"
)

// TestPowerCut is TestCrashKill9 with the power cut instead of a SIGKILL:
// the child's file lives on a filesystem that, at the cut, keeps only what
// was synced (file data at its fsync, names at their directory's fsync) and
// a random part of the rest, torn sectors included. A SIGKILL leaves the
// page cache behind and so cannot show a missing sync; this can.
func TestPowerCut(t *testing.T) { crashTest(t, false, newPowerCut(t)) }

// TestPowerCutShrinking cuts the power while the child drains its file and
// replaces it by compact copies (copy, sync, rename, directory sync).
func TestPowerCutShrinking(t *testing.T) { crashTest(t, true, newPowerCut(t)) }

type powerCut struct {
	real  string // the directory as a restart finds it
	mnt   string
	fsys  *powercut.FS
	state powercut.State
	syncs int
}

func newPowerCut(t *testing.T) *powerCut {
	if err := powercut.Available(); err != nil {
		powercut.Unavailable(t, err)
	}
	return &powerCut{real: t.TempDir(), mnt: t.TempDir(), state: powercut.State{}}
}

func (p *powerCut) mount(t *testing.T) string {
	state, err := powercut.ReadDir(p.real) // as the last check left it
	if err != nil {
		t.Fatal(err)
	}
	if p.fsys, err = powercut.Mount(p.mnt, state); err != nil {
		powercut.Unavailable(t, err)
	}
	t.Cleanup(func() { _ = p.fsys.Unmount() })
	return p.mnt
}

func (p *powerCut) crash(t *testing.T, cmd *exec.Cmd, rng *rand.Rand) {
	p.state = p.fsys.Cut(rng)
	_ = cmd.Process.Signal(syscall.SIGKILL)
}

func (p *powerCut) settle(t *testing.T) string {
	st := p.fsys.Stats()
	if err := p.fsys.Unmount(); err != nil {
		t.Fatal(err)
	}
	if st.FileSyncs == 0 {
		t.Fatalf("the child never synced its file: %+v", st)
	}
	p.syncs += st.FileSyncs
	t.Logf("power cut after %d writes, %d file syncs, %d directory syncs, %d renames; left %v", st.Writes, st.FileSyncs, st.DirSyncs, st.Renames, p.state.Names())
	if err := p.state.WriteDir(p.real); err != nil {
		t.Fatal(err)
	}
	return p.real
}

// childFailureOK: after the cut every call fails with EIO (a read through
// the file's mapping, with SIGBUS); any other failure is the child's own.
func (p *powerCut) childFailureOK(stderr string) bool {
	return strings.Contains(stderr, "input/output error") || strings.Contains(stderr, "SIGBUS") ||
		strings.Contains(stderr, "unexpected fault address")
}
