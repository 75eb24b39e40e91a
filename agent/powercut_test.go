//go:build linux

package agent_test

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/plantedge/plantedge/internal/powercut"
)

// TestPowerCutWhileDraining is TestChaosKillWhileDraining with the edge box
// losing power instead of the agent being killed: the data directory is on
// a filesystem that keeps, at each cut, only what was synced and a random
// part of the rest (internal/powercut). Odoo and the broker stay up, as they
// would in the office and on the line. In the end every piece made is in
// Odoo exactly once and every stop is exactly one downtime line.
func TestPowerCutWhileDraining(t *testing.T) { chaosDrain(t, &dataDirCut{}) }

type dataDirCut struct {
	dir   string
	fsys  *powercut.FS
	state powercut.State
}

func (c *dataDirCut) mount(t *testing.T, dataDir string) {
	if err := powercut.Available(); err != nil {
		powercut.Unavailable(t, err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	c.dir = dataDir
	c.remount(t, powercut.State{})
	t.Cleanup(func() { _ = c.fsys.Unmount() }) // after the last child is gone
}

func (c *dataDirCut) remount(t *testing.T, st powercut.State) {
	fsys, err := powercut.Mount(c.dir, st)
	if err != nil {
		powercut.Unavailable(t, err)
	}
	c.fsys = fsys
}

func (c *dataDirCut) before(rng *rand.Rand) { c.state = c.fsys.Cut(rng) }

func (c *dataDirCut) after(t *testing.T) {
	st := c.fsys.Stats()
	if err := c.fsys.Unmount(); err != nil {
		t.Fatal(err)
	}
	t.Logf("power cut after %d writes, %d file syncs, %d directory syncs; left %v", st.Writes, st.FileSyncs, st.DirSyncs, c.state.Names())
	c.remount(t, c.state)
}
