//go:build linux && !386 && !arm && !mips && !mipsle

package buffer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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

const syncFailChildEnv = "PLANTEDGE_BUFFER_SYNCFAIL_CHILD" // path of the buffer file; selects the child

// syncFailChild opens the buffer and prints "ready", or "err open (corrupt
// BOOL, EIO BOOL): MESSAGE" and exits 2; then it appends one batch of 20
// records (stored as a segment) per "append" line on stdin and prints "ok
// SEQ" or "err MESSAGE", and closes the buffer at the end of stdin.
//
// A buffer on a powercut mount is opened in a child, never in the test
// process that serves the mount: bbolt maps the file, and a page fault on
// it in the serving process can hang that process for good (see package
// powercut).
func syncFailChild() int {
	q, err := Open(os.Getenv(syncFailChildEnv), Options{CommitWindow: time.Millisecond, segmentMinBytes: 1024})
	if err != nil {
		fmt.Printf("err open (corrupt %t, EIO %t): %s\n", errors.Is(err, ErrCorruptFile), errors.Is(err, syscall.EIO),
			strings.ReplaceAll(err.Error(), "\n", " "))
		return 2
	}
	defer q.Close()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		recs := make([]Record, 20)
		for i := range recs {
			recs[i] = Record{Lane: LaneCounts, Key: "m", Data: bytes.Repeat([]byte{'x'}, 120)}
		}
		seqs, err := q.Append(context.Background(), recs)
		if err != nil {
			fmt.Println("err", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Println("ok", seqs[0])
	}
	return 0
}

// syncFailProc is a running syncFailChild.
type syncFailProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startSyncFailChild starts a syncFailChild on the buffer file at path; the
// test's cleanup kills it if it still runs.
func startSyncFailChild(t *testing.T, path string) *syncFailProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), syncFailChildEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the mount's cleanup, so it runs before the unmount.
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &syncFailProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
}

// say sends cmdLine (none if empty) and returns the child's next line.
func (c *syncFailProc) say(t *testing.T, cmdLine string) string {
	t.Helper()
	if cmdLine != "" {
		if _, err := fmt.Fprintln(c.stdin, cmdLine); err != nil {
			t.Fatal(err)
		}
	}
	if !c.out.Scan() {
		t.Fatalf("child ended: %v", c.out.Err())
	}
	return c.out.Text()
}

// end closes the child's stdin (it closes its buffer and exits) and waits
// for it: its exit status as Wait gives it.
func (c *syncFailProc) end() error {
	_ = c.stdin.Close()
	for c.out.Scan() { // whatever it still says
	}
	return c.cmd.Wait()
}

// TestSyncFailureAfterTheMetaWriteFailsTheQueue: the disk reports an error
// when bbolt syncs a commit's meta page. That commit is then visible to the
// next transaction (page cache) though the disk may not have it, and the
// queue's own counters do not know it: every later append would reuse its
// sequence numbers ("create segment N: bucket already exists" for good, seen
// in TestPowerCut). The queue must fail instead, so that the agent restarts
// and reopens the file; what was acknowledged before is kept.
func TestSyncFailureAfterTheMetaWriteFailsTheQueue(t *testing.T) {
	pc := newPowerCut(t)
	path := filepath.Join(pc.mount(t), "buffer.db")
	c := startSyncFailChild(t, path)
	cmd := c.cmd
	say := func(cmdLine string) string { t.Helper(); return c.say(t, cmdLine) }
	if l := say(""); l != "ready" {
		t.Fatalf("child: %s", l)
	}
	var acked []string
	for range 3 {
		l := say("append")
		if !strings.HasPrefix(l, "ok ") {
			t.Fatalf("append before the disk error: %s", l)
		}
		acked = append(acked, l)
	}
	// The next commit's data sync succeeds, its meta page's sync fails.
	pc.fsys.FailSyncsAfter(1)
	if l := say("append"); !strings.HasPrefix(l, "err ") || !strings.Contains(l, "input/output error") {
		t.Fatalf("append whose meta sync failed: %s", l)
	}
	l := say("append")
	if !strings.HasPrefix(l, "err ") || !strings.Contains(l, "known only after a reopen") {
		t.Fatalf("append after a half-done commit: %s, want the queue failed until it is reopened", l)
	}
	// The power goes; what was acknowledged is there after the restart.
	pc.crash(t, cmd, rand.New(rand.NewPCG(1, 2)))
	_ = cmd.Wait()
	q := openTest(t, filepath.Join(pc.settle(t), "buffer.db"), Options{})
	if q.Recovered() != "" {
		t.Fatalf("file quarantined: %s", q.Recovered())
	}
	if st := q.Stats(); st.Pending < 3*20 {
		t.Fatalf("%d records after the restart, %d acknowledged (%v)", st.Pending, 3*20, acked)
	}
}

// TestSystemErrorAtOpenKeepsTheFile: the disk fails the sync of the commit
// Open makes (a failing device; a full or read-only file system fails the
// same way): that says nothing about the file's content, which may hold
// records not yet forwarded. Open fails with the error, and the file stays
// where it is, whole — it was once moved aside as corrupt. The opens run in
// children (see syncFailChild): an open in this process, which serves the
// mount, hung it now and then in a page fault on bbolt's mapping.
func TestSystemErrorAtOpenKeepsTheFile(t *testing.T) {
	pc := newPowerCut(t)
	path := filepath.Join(pc.mount(t), "buffer.db")
	c := startSyncFailChild(t, path)
	if l := c.say(t, ""); l != "ready" {
		t.Fatalf("child: %s", l)
	}
	if l := c.say(t, "append"); !strings.HasPrefix(l, "ok ") {
		t.Fatalf("append: %s", l)
	}
	if err := c.end(); err != nil {
		t.Fatalf("child closing the buffer: %v", err)
	}
	pc.fsys.FailSyncsAfter(0)
	c = startSyncFailChild(t, path)
	l := c.say(t, "")
	if l == "ready" {
		t.Fatal("opened although the disk fails every sync")
	}
	if !strings.HasPrefix(l, "err open (corrupt false, EIO true): ") {
		t.Errorf("%s; want the disk's EIO, not corruption", l)
	}
	var ee *exec.ExitError
	if err := c.end(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("child after the failed open: %v, want exit status 2", err)
	}
	files := pc.fsys.Files()
	// (The reserve file the first open wrote stays; nothing is moved aside.)
	if names := files.Names(); !slices.Equal(names, []string{"buffer.db", "buffer.db.reserve"}) {
		t.Fatalf("files after the failed open: %v", names)
	}
	// Whole: a copy elsewhere opens with all the records.
	cp := filepath.Join(t.TempDir(), "buffer.db")
	if err := os.WriteFile(cp, files["buffer.db"], 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(cp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if n := len(readAll(t, q, LaneCounts)); q.Recovered() != "" || n != 20 {
		t.Errorf("copy: recovered %q, records %d, want 20", q.Recovered(), n)
	}
}
