package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/internal/fstest"
)

// stallBench is a bench whose data_dir is a file system that fsfreeze can
// freeze (fstest.Freezable: needs root), with a write stall said after a
// second; its agent runs, has booked a first piece, and holds two dead
// letters (1 and 2) of 2 pieces each, the round that moved them ended (no
// write of its own is left to stall on the test's freeze: see waitBooked).
func stallBench(t *testing.T) (b *bench, freeze, thaw func()) {
	t.Helper()
	b = newBench(t, 19)
	data := filepath.Join(filepath.Dir(b.cfgPath), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	freeze, thaw = fstest.Freezable(t, data)
	b.writeStall = time.Second
	b.startAgent()
	b.produce(1)
	b.waitQty()
	b.refuse(1)
	b.refuse(2)
	b.waitRound()
	return b, freeze, thaw
}

// waitBooked waits until Odoo shows qty on the bench's work order, the
// agent holds nothing pending, and the round that sent it has ended: no
// write is left to stall on the next freeze but the one a test makes. A
// round still writing (its acknowledgement, the work order's state after
// it) when the disk froze stalled in its commit's meta page, which bbolt
// holds every read's start behind: the dead letters listed then were
// rightly said unreadable (on a busy machine, where the round ended after
// the dead letter or the quantity showed).
func (b *bench) waitBooked(qty float64) {
	b.t.Helper()
	waitUntil(b.t, 15*time.Second, "booked", func() (bool, string) {
		st := b.a.Status()
		return b.qty() == qty && st.Buffer.Pending == 0, fmt.Sprintf("qty %v want %v, pending %d", b.qty(), qty, st.Buffer.Pending)
	})
	b.waitRound()
}

// A technician who sees "buffer write stalled" in status runs the dead
// letter commands, from the CLI: list answers with the dead letters there
// are and a note: on stderr (--json: stdout stays JSON); a retry or drop
// asked then is refused, exit 1, nothing changed, and one whose own write
// stalls says it takes effect when the disk completes its writes. While it
// waits, list's note names it ("what it retrys is listed until then", the
// agent said), and a drop on a terminal says the note before it asks (the
// list it showed dropped it: the question was asked as on a sound disk,
// and the drop refused once answered). Thawed, each did what it said: the
// retry once, the refused ones nothing.
func TestDeadLetterCommandsDuringAWriteStall(t *testing.T) {
	b, freeze, thaw := stallBench(t)
	ctx := context.Background()
	dl := func(args ...string) (stdout, stderr string, err error) {
		t.Helper()
		return runCmd(ctx, append([]string{"deadletter"}, append(args, "-c", b.cfgPath)...)...)
	}
	listed := func(stdout string, ids ...int) bool {
		var got []int
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
			var id int
			if _, err := fmt.Sscan(l, &id); err == nil {
				got = append(got, id)
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(ids)
	}
	const stalled = "note: the buffer's disk has not completed a write for "
	notListed := "a dead letter Odoo refuses meanwhile is listed once the disk completes its writes"

	// A write stalled: the production's.
	freeze()
	b.produce(2)
	waitUntil(t, 30*time.Second, "the stall shown", func() (bool, string) {
		st := b.a.Status()
		return st.Buffer.WriteStalledSeconds > 0, fmt.Sprintf("%+v", st.Buffer)
	})
	if out, errOut, err := dl("list"); err != nil || !listed(out, 1, 2) || !strings.HasPrefix(errOut, stalled) ||
		!strings.Contains(errOut, notListed) || strings.Count(errOut, "\n") != 1 {
		t.Errorf("list during the stall: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	// The real binary's streams and exit: JSON alone on stdout, the note on
	// stderr.
	var out, errOut bytes.Buffer
	cmd := mainCmd(os.Args[0], "deadletter", "list", "--json", "-c", b.cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var views []agent.DeadLetterView
	if err := cmd.Run(); err != nil || json.Unmarshal(out.Bytes(), &views) != nil || len(views) != 2 ||
		!strings.HasPrefix(errOut.String(), stalled) || !strings.Contains(errOut.String(), notListed) {
		t.Errorf("plantedge deadletter list --json during the stall: %v, %d dead letters\nstdout:\n%s\nstderr:\n%s", err, len(views), out.String(), errOut.String())
	}
	for _, args := range [][]string{{"retry", "1"}, {"drop", "2", "--yes"}, {"retry", "all"}, {"drop", "all", "--yes"}} {
		out.Reset()
		errOut.Reset()
		cmd := mainCmd(os.Args[0], append([]string{"deadletter"}, append(args, "-c", b.cfgPath)...)...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || out.Len() != 0 ||
			!strings.HasPrefix(errOut.String(), "plantedge: agent: the buffer's disk has not completed a write for ") ||
			!strings.Contains(errOut.String(), "the "+args[0]+" would wait for it; nothing was changed") {
			t.Errorf("plantedge deadletter %v during the stall: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errOut.String())
		}
	}
	thaw()
	b.waitBooked(3) // 1, and the 2 made during the stall
	if out, errOut, err := dl("list"); err != nil || !listed(out, 1, 2) || errOut != "" {
		t.Errorf("list after the thaw: %v; want both (nothing changed), no note\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}

	// The retry's own write stalls.
	freeze()
	if out, errOut, err := dl("retry", "1"); exitCode(err) != 1 || out != "" || errOut != "" ||
		!strings.Contains(fmt.Sprint(err), "the retry waits for it, and takes effect when the disk completes its writes") {
		t.Errorf("retry stalled: exit %d (%v)\nstdout:\n%s\nstderr:\n%s", exitCode(err), err, out, errOut)
	}
	waits := "a retry of dead letter 1 asked at "
	if out, errOut, err := dl("list"); err != nil || !listed(out, 1, 2) || !strings.HasPrefix(errOut, stalled) ||
		!strings.Contains(errOut, waits) || !strings.Contains(errOut, "waits for it: what it retries is listed until then") {
		t.Errorf("list while the retry waits: %v; want both, noted as the retry waiting\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	// On a terminal the drop says the note before it asks.
	stdinIsTerminal = func() bool { return true }
	root := newRootCmd()
	var both bytes.Buffer
	root.SetOut(&both)
	root.SetErr(&both)
	root.SetIn(strings.NewReader("y\n"))
	root.SetArgs([]string{"deadletter", "drop", "2", "-c", b.cfgPath})
	err := execute(ctx, root)
	stdinIsTerminal = func() bool { return false }
	asked := both.String()
	note, question := strings.Index(asked, stalled), strings.Index(asked, "Drop 1 dead letter for good?")
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), waits) || !strings.Contains(fmt.Sprint(err), "this drop changed nothing") ||
		note < 0 || question < 0 || note > question || !strings.Contains(asked[note:question], waits) {
		t.Errorf("drop on a terminal while the retry waits: exit %d (%v); want the note before the question, and the drop refused\n%s", exitCode(err), err, asked)
	}
	if out, errOut, err := dl("drop", "all", "--yes"); exitCode(err) != 1 || out != "" ||
		!strings.Contains(fmt.Sprint(err), waits) || !strings.Contains(fmt.Sprint(err), "this drop changed nothing") {
		t.Errorf("drop all while the retry waits: exit %d (%v)\nstdout:\n%s\nstderr:\n%s", exitCode(err), err, out, errOut)
	}
	thaw()
	b.waitBooked(5) // the retried 2
	if out, errOut, err := dl("list"); err != nil || !listed(out, 2) || errOut != "" {
		t.Errorf("list after the thaw: %v; want 2 alone (1 retried, 2 not dropped), no note\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if out, errOut, err := dl("drop", "2", "--yes"); err != nil || out != "drop: 1 dead letter\n" || errOut != "" {
		t.Errorf("drop after the thaw: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if out, _, err := dl("list"); err != nil || out != "no dead letters\n" {
		t.Errorf("list after the drop: %v\n%s", err, out)
	}
	b.produce(1)
	b.waitBooked(6) // the retry booked once; what was dropped, never
}
