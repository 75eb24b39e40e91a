package buffer

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	crashChildEnv   = "PLANTEDGE_BUFFER_CRASH_CHILD"  // path of the buffer file; selects child mode
	crashShrinkEnv  = "PLANTEDGE_BUFFER_CRASH_SHRINK" // set: drain every lane and shrink the file often
	crashWriters    = 4
	crashRounds     = 24
	crashMaxBatch   = 40
	crashPayloadLen = 120
)

// crashPayload is the deterministic content of record i of batch b of writer w,
// so the parent can check every acknowledged record is intact.
func crashPayload(w, b, i int) []byte {
	s := fmt.Sprintf("w=%d b=%d i=%d ", w, b, i)
	return []byte(s + strings.Repeat(string(rune('a'+(w+b+i)%26)), crashPayloadLen-len(s)))
}

func crashMetaKey(w int) string { return fmt.Sprintf("crash/writer/%d", w) }

// crashLane spreads a batch over the lanes; its first record is always an
// event (never drained), so a committed batch always leaves a trace.
func crashLane(w, i int) Lane {
	if i == 0 {
		return LaneEvents
	}
	return Lane((w + i) % NumLanes)
}

// crashChild appends from several goroutines until it is killed; after every
// Append returns it prints "ack <writer> <batch> <firstSeq> <n>". Each batch
// carries the writer's batch number as a meta entry in the same transaction.
func crashChild() int {
	path := os.Getenv(crashChildEnv)
	shrinking := os.Getenv(crashShrinkEnv) != ""
	// A low segment threshold: most commits store segments, and the drainer's
	// partial acks rewrite them, so kills also land in segment rewrites.
	opts := Options{CommitWindow: 2 * time.Millisecond, segmentMinBytes: 1024}
	drain, readMax := []Lane{LaneTelemetry}, 50
	if shrinking {
		// Drain everything, and shrink as soon as 64 KiB are free, so kills
		// also land in shrinks (copy, rename, reopen).
		// The pauses widen the windows between copying, renaming and reopening.
		opts.shrinkMinFree, opts.shrinkEvery = 64<<10, time.Millisecond
		opts.shrinkHook = func(string) { time.Sleep(3 * time.Millisecond) }
		drain, readMax = []Lane{LaneEvents, LaneCounts, LaneTelemetry}, 500
	}
	q, err := Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	// Continue each writer's batch numbering from what the file holds.
	start := make([]int, crashWriters)
	for w := range crashWriters {
		if v, _ := q.Meta(crashMetaKey(w)); v != nil {
			n, _ := strconv.Atoi(string(v))
			start[w] = n + 1
		}
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	var wg sync.WaitGroup
	// A drainer acks telemetry as it comes, so kills also land in deletes
	// and page reuse. It announces what it is about to ack ("acking"), and
	// confirms once Ack returned ("acked").
	wg.Go(func() {
		var shrinks uint64
		for i := 0; ; i++ {
			if n := q.shrinks.Load(); n != shrinks {
				shrinks = n
				mu.Lock()
				fmt.Fprintln(out, "shrunk")
				out.Flush()
				mu.Unlock()
			}
			if shrinking && i%len(drain) == 0 {
				time.Sleep(10 * time.Millisecond) // let a backlog build up, then drain it
			}
			recs, err := q.Read(drain[i%len(drain)], 0, readMax)
			if err != nil {
				fmt.Fprintln(os.Stderr, "child read:", err)
				os.Exit(3)
			}
			if len(recs) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			line := "acking"
			for _, r := range recs {
				line += " " + strconv.FormatUint(r.Seq, 10)
			}
			mu.Lock()
			fmt.Fprintln(out, line)
			out.Flush()
			mu.Unlock()
			if err := q.Ack(context.Background(), recs); err != nil {
				fmt.Fprintln(os.Stderr, "child ack:", err)
				os.Exit(3)
			}
			mu.Lock()
			fmt.Fprintln(out, "acked"+strings.TrimPrefix(line, "acking"))
			out.Flush()
			mu.Unlock()
		}
	})
	for w := range crashWriters {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)))
			for b := start[w]; ; b++ {
				n := 1 + rng.IntN(crashMaxBatch)
				recs := make([]Record, n)
				for i := range recs {
					recs[i] = Record{Lane: crashLane(w, i), Key: fmt.Sprintf("writer-%d", w), Data: crashPayload(w, b, i)}
				}
				seqs, err := q.Append(context.Background(), recs, KV{Key: crashMetaKey(w), Value: []byte(strconv.Itoa(b))})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %d %d %d\n", w, b, seqs[0], n)
				for i := 1; i < n; i++ {
					if seqs[i] != seqs[0]+uint64(i) {
						fmt.Fprintf(out, "bad seqs %v\n", seqs)
					}
				}
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

type crashAck struct {
	writer, batch, n int
	first            uint64
}

// TestCrashKill9 SIGKILLs a child that appends in a loop at random moments,
// then checks that every record whose Append returned is present, intact and
// in order, and that meta entries committed with records are there with them.
func TestCrashKill9(t *testing.T) { crashKill9(t, false) }

// TestCrashKill9Shrinking is TestCrashKill9 with a child that drains every
// lane and replaces its file by a compact copy whenever 64 KiB are free, so
// that kills land in shrinks too.
func TestCrashKill9Shrinking(t *testing.T) { crashKill9(t, true) }

func crashKill9(t *testing.T, shrinking bool) { crashTest(t, shrinking, nil) }

// crasher is how a round ends: mount gives the directory the child's file is
// in for the round, crash stops the child, and after it is gone settle gives
// the directory as a restart finds it. Nil is SIGKILL.
type crasher interface {
	mount(t *testing.T) string
	crash(t *testing.T, cmd *exec.Cmd, rng *rand.Rand)
	settle(t *testing.T) string
	// childFailureOK tells whether what the child wrote to stderr is how
	// the crash ends it (a power cut fails its last calls), not a fault.
	childFailureOK(stderr string) bool
}

func crashTest(t *testing.T, shrinking bool, cr crasher) {
	if testing.Short() {
		t.Skip("crash test runs child processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if cr == nil {
		cr = &sigkill{}
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random seed %d (crash moments, and what a power cut keeps)", seed)
	var acked []crashAck
	shrinks, midShrink := 0, 0
	deleting, deleted := make(map[uint64]bool), make(map[uint64]bool)
	// A slow child (the race detector, FUSE) shrinks less per round: go on
	// until it has shrunk often enough, up to three times the rounds.
	round := 0
	for ; round < crashRounds || shrinking && shrinks < crashRounds/2 && round < 3*crashRounds; round++ {
		path := filepath.Join(cr.mount(t), "buffer.db")
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		if shrinking {
			cmd.Env = append(cmd.Env, crashShrinkEnv+"=1")
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		select {
		case l := <-lines:
			if l != "ready" {
				t.Fatalf("round %d: child said %q; stderr: %s", round, l, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("round %d: child did not start", round)
		}
		n := 0
		handle := func(l string) {
			if rest, ok := strings.CutPrefix(l, "acking "); ok {
				for _, f := range strings.Fields(rest) {
					seq, _ := strconv.ParseUint(f, 10, 64)
					deleting[seq] = true
				}
				return
			}
			if l == "shrunk" {
				shrinks++
				return
			}
			if rest, ok := strings.CutPrefix(l, "acked "); ok {
				for _, f := range strings.Fields(rest) {
					seq, _ := strconv.ParseUint(f, 10, 64)
					deleted[seq] = true
				}
				return
			}
			var a crashAck
			if _, err := fmt.Sscanf(l, "ack %d %d %d %d", &a.writer, &a.batch, &a.first, &a.n); err != nil {
				t.Fatalf("round %d: child line %q: %v", round, l, err)
			}
			acked = append(acked, a)
			n++
		}
		if shrinking && shrinks < (round+1)/2 {
			// Behind on shrinks (the race detector, FUSE, a busy machine):
			// let this child run until it has shrunk once more, so that the
			// count follows its progress, not the speed of the machine.
			// The crash below still lands at a random moment after that.
			want, deadline := shrinks+1, time.After(20*time.Second)
		progress:
			for shrinks < want {
				select {
				case l, ok := <-lines:
					if !ok {
						break progress
					}
					handle(l)
				case <-deadline:
					break progress
				}
			}
		}
		time.Sleep(time.Duration(5+rng.IntN(100)) * time.Millisecond)
		cr.crash(t, cmd, rng)
		for l := range lines {
			handle(l)
		}
		_ = cmd.Wait()
		if strings.Contains(stderr.String(), "child") && !cr.childFailureOK(stderr.String()) {
			t.Fatalf("round %d: child failed: %s", round, stderr.String())
		}
		path = filepath.Join(cr.settle(t), "buffer.db")
		if _, err := os.Stat(path + shrinkSuffix); err == nil {
			midShrink++ // killed between starting the copy and the rename
		}
		verifyCrashFile(t, path, acked, deleting, deleted, shrinking)
		t.Logf("round %d: %d appends acknowledged before the crash (%d total), %d shrinks so far", round, n, len(acked), shrinks)
	}
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged in any round")
	}
	if shrinking {
		t.Logf("%d of %d crashes left an unfinished copy behind", midShrink, round)
	}
	if shrinking && shrinks < crashRounds/2 {
		t.Fatalf("the children shrank their file %d times in %d rounds; the test needs more", shrinks, round)
	}
}

// sigkill keeps the child's file in one directory across rounds.
type sigkill struct{ dir string }

func (k *sigkill) mount(t *testing.T) string {
	if k.dir == "" {
		k.dir = t.TempDir()
	}
	return k.dir
}

func (k *sigkill) crash(t *testing.T, cmd *exec.Cmd, _ *rand.Rand) {
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
}

func (k *sigkill) settle(*testing.T) string   { return k.dir }
func (k *sigkill) childFailureOK(string) bool { return false }

// verifyCrashFile checks the file after a kill. Records in deleting may be
// gone (their Ack may have committed); records in deleted must be gone.
func verifyCrashFile(t *testing.T, path string, acked []crashAck, deleting, deleted map[uint64]bool, drainsAll bool) {
	t.Helper()
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer q.Close()
	if q.Recovered() != "" {
		t.Fatalf("file was quarantined after kill -9: %s", q.Recovered())
	}
	bySeq := make(map[uint64]Record)
	for l := range Lane(NumLanes) {
		recs, err := q.Read(l, 0, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("lane %s out of order: %d after %d", l, r.Seq, recs[i-1].Seq)
			}
			bySeq[r.Seq] = r
		}
	}
	if st := q.Stats(); st.Pending != len(bySeq) {
		t.Fatalf("stats pending %d, read %d", st.Pending, len(bySeq))
	}
	lastBatch := make(map[int]int)
	for _, a := range acked {
		for i := range a.n {
			seq := a.first + uint64(i)
			r, ok := bySeq[seq]
			if deleted[seq] {
				if ok {
					t.Fatalf("seq %d is back although its Ack returned", seq)
				}
				continue
			}
			if !ok && deleting[seq] {
				continue
			}
			if !ok {
				t.Fatalf("acknowledged record seq %d (writer %d batch %d #%d) is missing", seq, a.writer, a.batch, i)
			}
			if want := crashPayload(a.writer, a.batch, i); string(r.Data) != string(want) || r.Lane != crashLane(a.writer, i) {
				t.Fatalf("seq %d: got lane %s %q, want lane %s %q", seq, r.Lane, r.Data, crashLane(a.writer, i), want)
			}
		}
		lastBatch[a.writer] = max(lastBatch[a.writer], a.batch)
	}
	// Per key (writer) order: batch numbers never go down as Seq goes up.
	seen := make(map[string]int)
	for l := range Lane(NumLanes) {
		recs, _ := q.Read(l, 0, 1<<30)
		for _, r := range recs {
			var w, b, i int
			if _, err := fmt.Sscanf(string(r.Data), "w=%d b=%d i=%d", &w, &b, &i); err != nil {
				t.Fatalf("seq %d: bad payload %q", r.Seq, r.Data)
			}
			k := fmt.Sprintf("%s/%d", l, w)
			if b < seen[k] {
				t.Fatalf("writer %d lane %s: batch %d after %d", w, l, b, seen[k])
			}
			seen[k] = b
		}
	}
	// Meta is atomic with its records: the stored batch number is at least the
	// last acknowledged one, and that batch's records are all there.
	for w := range crashWriters {
		v, err := q.Meta(crashMetaKey(w))
		if err != nil {
			t.Fatal(err)
		}
		if v == nil {
			if _, ok := lastBatch[w]; ok {
				t.Fatalf("writer %d: meta missing though batch %d was acknowledged", w, lastBatch[w])
			}
			continue
		}
		b, _ := strconv.Atoi(string(v))
		if last, ok := lastBatch[w]; ok && b < last {
			t.Fatalf("writer %d: meta says batch %d, but batch %d was acknowledged", w, b, last)
		}
		found := 0
		for _, r := range bySeq {
			if strings.HasPrefix(string(r.Data), fmt.Sprintf("w=%d b=%d ", w, b)) {
				found++
			}
		}
		if found == 0 && !drainsAll { // with every lane drained, the batch may be acked already
			t.Fatalf("writer %d: meta says batch %d but none of its records are in the file", w, b)
		}
	}
}
