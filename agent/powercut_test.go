//go:build linux && !386 && !arm && !mips && !mipsle

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
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

// TestDiskErrorAtSyncStopsTheAgent: the disk fails a sync after bbolt wrote
// a commit's meta page. The agent stops with the reason (systemd restarts
// it) instead of running on with a buffer that disagrees with its file;
// the restart reopens the file, and Odoo ends exact.
func TestDiskErrorAtSyncStopsTheAgent(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	cut := &dataDirCut{}
	cut.mount(t, filepath.Join(p.dir, "data"))
	m := p.machines[0]
	child := agenttest.StartChild(t, p.cfgPath)
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	defer func() {
		_ = child.Process.Kill()
		<-exited
	}()
	api := agent.NewAPIClient(p.listen)
	waitFor(t, 30*time.Second, "child agent connected", func() (bool, string) {
		st, err := api.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return len(st.Sources) == 1 && st.Sources[0].State == "connected", fmt.Sprintf("%+v", st.Sources)
	})
	p.publish(m) // the counter's baseline
	p.produce(m, 3, 0)
	p.waitExact(nil, 15*time.Second)

	// A commit's data sync (and a growth's) succeeds, its meta page's
	// fails: counted by the meta write, not by syncs (under load a commit
	// may grow the file first, one sync more).
	cut.fsys.FailSyncsAfterMetaWrite(2 * int64(os.Getpagesize()))
	p.produce(m, 2, 0)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("agent after a disk error at sync: %v, want a failure exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent ran on after a disk error at sync")
	}

	// The restart (on the disk as it is after a power cycle) gets the
	// unacknowledged message again from the broker.
	cut.before(rand.New(rand.NewPCG(3, 4)))
	cut.after(t)
	child = agenttest.StartChild(t, p.cfgPath)
	go func() { exited <- child.Wait() }()
	p.waitExact(nil, 30*time.Second)
}
