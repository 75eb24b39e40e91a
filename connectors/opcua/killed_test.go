package opcua

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// The child-client mode of the test binary (TestMain): a source against
// the endpoint in envChildClient keeping its session in the file in
// envChildKeep, printing "connected" at each session's start, until it is
// killed.
const (
	envChildClient = "PLANTEDGE_OPCUA_TEST_CLIENT_ENDPOINT"
	envChildKeep   = "PLANTEDGE_OPCUA_TEST_CLIENT_KEEP"
	envChildNode   = "PLANTEDGE_OPCUA_TEST_CLIENT_NODE"
	envChildUser   = "PLANTEDGE_OPCUA_TEST_CLIENT_USER" // user:password
	// policy:mode, and the directory of the client certificate; none: no
	// security
	envChildSecurity = "PLANTEDGE_OPCUA_TEST_CLIENT_SECURITY"
	envChildDataDir  = "PLANTEDGE_OPCUA_TEST_CLIENT_DATADIR"
	// the publishing interval (a duration; the default when empty); set,
	// the child also prints "sample <value> <source time>" for each value
	// notified (not a read's)
	envChildPublish = "PLANTEDGE_OPCUA_TEST_CLIENT_PUBLISH"
)

// fileKeeper is a SessionKeeper in a file (0600), as the agent's buffer
// file keeps it.
type fileKeeper string

func (f fileKeeper) KeptSession() ([]byte, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (f fileKeeper) KeepSession(b []byte) error {
	if b == nil {
		if err := os.Remove(string(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp := string(f) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(f))
}

func runChildClient() {
	var keeper SessionKeeper
	if k := os.Getenv(envChildKeep); k != "" {
		keeper = fileKeeper(k)
	}
	user, password, _ := strings.Cut(os.Getenv(envChildUser), ":")
	policy, mode, _ := strings.Cut(os.Getenv(envChildSecurity), ":")
	var sink connectors.Sink = newCollector()
	var interval time.Duration
	if p := os.Getenv(envChildPublish); p != "" {
		interval, _ = time.ParseDuration(p)
		sink = printingSink{}
	}
	src, err := New(Config{
		PublishingInterval: interval,
		Username:           user,
		Password:           password,
		SecurityPolicy:     policy,
		SecurityMode:       mode,
		DataDir:            os.Getenv(envChildDataDir),
		Name:               "line1",
		Endpoint:           os.Getenv(envChildClient),
		Nodes:              []string{os.Getenv(envChildNode)},
		Sessions:           keeper,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnConnect: func() {
			fmt.Println("connected")
		},
	}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = src.Run(context.Background())
}

// printingSink prints "sample <value> <source time>" for each value
// notified.
type printingSink struct{}

func (printingSink) Deliver(_ context.Context, s connectors.Sample) error {
	if !s.Initial {
		fmt.Printf("sample %v %s\n", s.Value, s.SourceTime.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// startClientChild starts the test binary as a source against endpoint,
// keeping its session in keep ("" keeps none), with env added (the child's
// security), and returns once the source is connected, with the child's
// log (debug; what it prints after "connected" too, as "stdout: ...").
func startClientChild(t *testing.T, endpoint, node, user, keep string, env ...string) (*exec.Cmd, *lockedLog) {
	t.Helper()
	cmd, logs, connected := spawnClientChild(t, endpoint, node, user, keep, env...)
	select {
	case <-connected:
	case <-time.After(60 * time.Second):
		t.Fatalf("the child source did not connect in 60 s; its log:\n%s", logs)
	}
	return cmd, logs
}

// spawnClientChild is startClientChild without the wait: connected gets
// a value once the source is connected.
func spawnClientChild(t *testing.T, endpoint, node, user, keep string, env ...string) (*exec.Cmd, *lockedLog, <-chan bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildClient+"="+endpoint, envChildKeep+"="+keep, envChildNode+"="+node, envChildUser+"="+user)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := new(lockedLog)
	cmd.Stderr = io.MultiWriter(logs, testWriter{t})
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	connected := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "connected" {
				connected <- true
				break
			}
		}
		for sc.Scan() {
			fmt.Fprintln(logs, "stdout: "+sc.Text())
		}
	}()
	return cmd, logs, connected
}

// A source killed with SIGKILL (a crash loop: systemd restarting a crashing
// agent) left its session on the server for its lifetime, one more per
// kill (opcuatest.Sessions, which gopcua's server never drops, counted 1,
// 2, 3, 4 open after each start's connect). The session is kept with
// cfg.Sessions, and the next process closes it before its first
// connection: one open, the live one, after each start. With a user, the
// session is activated again with the user's credentials, which the
// server checks.
func TestKilledSourceSessionIsClosedByTheNext(t *testing.T) {
	t.Run("anonymous", func(t *testing.T) { killedSessionClosed(t, "") })
	t.Run("user", func(t *testing.T) {
		killedSessionClosed(t, "operator:s3cret", opcuatest.WithUser("operator", "s3cret"))
	})
}

func killedSessionClosed(t *testing.T, user string, opts ...opcuatest.Option) {
	srv := startSlots(t, 0, opts...)
	keep := filepath.Join(t.TempDir(), "session")
	for start := 1; start <= 4; start++ {
		cmd, _ := startClientChild(t, srv.Endpoint(), srv.NodeID("Count"), user, keep)
		open := 0
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if open = srv.Sessions().Open(); open == 1 || time.Now().After(end) {
				break
			}
		}
		if open != 1 {
			t.Fatalf("start %d connected: %d sessions open on the server, want 1 (the live one)", start, open)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	fi, err := os.Stat(keep)
	if err != nil {
		t.Fatalf("the last session is not kept: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kept session file mode %v, want 0600", fi.Mode().Perm())
	}
	if n := srv.Sessions().Open(); n != 1 {
		t.Errorf("after the last kill: %d sessions open, want the one it left", n)
	}
}

// A clean stop closes the session and forgets it: the next start has
// nothing to close. A session kept for another user of the server is not
// tried, and forgotten.
func TestCleanStopForgetsTheKeptSession(t *testing.T) {
	srv := startSlots(t, 0)
	keep := fileKeeper(filepath.Join(t.TempDir(), "session"))
	other := []byte(`{"server":"` + connectors.ServerID(srv.Endpoint()) + `","policy":"http://opcfoundation.org/UA/SecurityPolicy#None","mode":"MessageSecurityModeNone","user":"someone","token":"AQID"}`)
	if err := keep.KeepSession(other); err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{Name: "line1", Endpoint: srv.Endpoint(), Nodes: []string{srv.NodeID("Count")}, Sessions: keep,
		Logger: testLogger(t)}, newCollector())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx) }()
	waitUntil(t, 60*time.Second, func() bool { return src.State() == connectors.StateConnected })
	b, err := keep.KeptSession()
	if err != nil || b == nil || string(b) == string(other) {
		t.Fatalf("kept while connected: %q, %v; want the live session", b, err)
	}
	if n := src.Stats().LeftSessionsClosed; n != 0 {
		t.Errorf("%d left sessions closed: the one kept for another user was tried", n)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if b, err := keep.KeptSession(); b != nil || err != nil {
		t.Errorf("kept after a clean stop: %q, %v", b, err)
	}
	if n := srv.Sessions().Open(); n != 0 {
		t.Errorf("%d sessions open after a clean stop", n)
	}
}

// The same against node-opcua, the way plants run: Basic256Sha256
// SignAndEncrypt and a user. The killed run's session, kept, is activated
// again by the next process on a secure channel of its own (its client
// certificate the same, the signature and the encrypted password made
// with the kept server nonce and certificate) and closed before that
// process asks for any session of its own: node-opcua, which counts its
// sessions itself, never counts more than one through the kills, and one,
// the live one, after each start.
func TestKilledSecureSessionIsClosedByTheNext(t *testing.T) {
	srv := startNodeServer(t)
	keep := filepath.Join(t.TempDir(), "session")
	env := []string{envChildSecurity + "=Basic256Sha256:SignAndEncrypt", envChildDataDir + "=" + t.TempDir()}
	const left = "closed the session the previous run left on the server"
	printed := 0
	for start := 1; start <= 3; start++ {
		if start > 1 {
			// The killed run's session is still on the server.
			if n := srv.sessions.Load(); n != 1 {
				t.Fatalf("before start %d: the server counts %d sessions, want the one the killed run left", start, n)
			}
		}
		cmd, logs := startClientChild(t, srv.Endpoint, secureCounter, "operator:s3cret", keep, env...)
		// (the server prints its count a moment after a close)
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if srv.sessions.Load() == 1 && (start == 1 || strings.Contains(logs.String(), left)) {
				break
			}
		}
		counts, _ := srv.counts.since(printed)
		if n := srv.sessions.Load(); n != 1 {
			t.Fatalf("start %d connected: the server counts %d sessions (printed since the start: %v), want 1, the live one", start, n, counts)
		}
		if start > 1 && !strings.Contains(logs.String(), left) {
			t.Fatalf("start %d did not close the killed run's session; its log:\n%s", start, logs)
		}
		if i := slices.IndexFunc(counts, func(n int64) bool { return n > 1 }); i >= 0 || len(counts) == 0 {
			t.Fatalf("start %d: the server counted %v sessions since the start, want never more than one", start, counts)
		}
		_, printed = srv.counts.since(0)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if b, err := fileKeeper(keep).KeptSession(); err != nil || b == nil {
		t.Fatalf("the last killed run's session is not kept: %q, %v", b, err)
	}
}

// A run killed (SIGKILL, a power cut, the OOM killer; systemd starts the
// next at once) left its session, and its subscription, on the server: a
// stop and the run after it, made before the next run started, waited in
// the subscription's queue, and the next run only closed the session — its
// first read brought the current value, the run the machine was in, and
// the stop was lost. The session is kept with its subscription (id,
// revised interval and lifetime, and the nodes its monitored items' handles
// stand for): the next run takes the changes it holds and delivers them,
// in order, with their source times, before its first read's values.
//
// The answers the killed run was sent and had not acknowledged stay
// offered for Republish (here all of them: the server takes no
// acknowledgement, NO_ACKS), and the killed run's sink had them: none is
// delivered again. With a keeper that tells what the sink has
// (DeliveredTimes) they are had again and dropped by it, and every change
// made while no run was comes; without, they are not asked for, nor the
// answers the server sent after the kill to the Publish requests the
// killed run had waiting.
func TestKilledRunsChangesAreDeliveredByTheNext(t *testing.T) {
	t.Run("publish only", func(t *testing.T) { killedRunsChanges(t, false) })
	t.Run("delivered times", func(t *testing.T) { killedRunsChanges(t, true) })
}

// deliveredKeeper is a fileKeeper that tells the source time of the last
// value the killed child printed (DeliveredTimes).
type deliveredKeeper struct {
	fileKeeper
	addr string
	last time.Time
}

func (k deliveredKeeper) DeliveredTime(address string) time.Time {
	if address != k.addr {
		return time.Time{}
	}
	return k.last
}

func killedRunsChanges(t *testing.T, delivered bool) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,1", "NO_ACKS=1")
	const run = "nsu=urn:plantedge:test;s=L0.M0.T0"
	w := opcuatest.NewWriter(t, srv.Endpoint)
	set := func(v float64) time.Time {
		t.Helper()
		return w.Set(t, "urn:plantedge:test", "L0.M0.T0", v)
	}
	set(1)
	keep := filepath.Join(t.TempDir(), "session")
	cmd, logs := startClientChild(t, srv.Endpoint, run, "", keep, envChildPublish+"=100ms")
	// A stop and a run notified to the killed run: its sink has them.
	set(0)
	time.Sleep(300 * time.Millisecond)
	ranAt := set(1)
	waitUntil(t, 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "stdout: sample 1 "+ranAt.UTC().Format(time.RFC3339Nano))
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	// While no run: the machine stops and runs again (each change
	// sampled: more apart than the sampling interval).
	values := []float64{0, 1}
	var written []time.Time
	for _, v := range values {
		time.Sleep(300 * time.Millisecond)
		written = append(written, set(v))
	}

	var keeper SessionKeeper = fileKeeper(keep)
	if delivered {
		keeper = deliveredKeeper{fileKeeper: fileKeeper(keep), addr: run, last: ranAt}
	}
	col := newCollector()
	var mu sync.Mutex
	var asked []string
	src := runSourceWith(t, Config{Endpoint: srv.Endpoint, Nodes: []string{run}, Sessions: keeper,
		PublishingInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second}, col, func(s *Source) {
		s.drainAsking = func(what string) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, what)
		}
	})
	_, first := col.waitFor(t, 0, time.Minute, "the first read's value", func(s connectors.Sample) bool { return s.Address == run && s.Initial })
	got := col.all()[:first]
	// Each one written while no run was, in order, none twice: all of
	// them with the delivered times; without, those the server sent to
	// the Publish requests the killed run had waiting may be missing
	// (node-opcua answers them as the changes come, and sends the change
	// again in its next answer — mostly).
	ok, k := !delivered || len(got) == len(values), -1
	for _, s := range got {
		j := k + 1
		for j < len(written) && !written[j].Equal(s.SourceTime) {
			j++
		}
		if ok = ok && j < len(written) && s.Address == run && s.Value == values[j] && s.Good; !ok {
			break
		}
		k = j
	}
	if !ok {
		t.Errorf("before the first read's value: %d samples, want the %d written while no run was (all of them: %v)", len(got), len(values), delivered)
		for _, s := range got {
			t.Errorf("  %v @ %s (good %v)", s.Value, s.SourceTime.Format("15:04:05.000"), s.Good)
		}
		for i, v := range values {
			t.Errorf("written %v @ %s", v, written[i].Format("15:04:05.000"))
		}
	}
	if st := src.Stats(); st.LeftSessionsClosed != 1 {
		t.Errorf("%d left sessions closed, want 1", st.LeftSessionsClosed)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered != slices.Contains(asked, "republish") {
		t.Errorf("the kept session's subscription asked %q (delivered times told: %v)", asked, delivered)
	}
}

// A monitored item's client handle is its node's index + 1: the
// subscription a killed run left is drained only by a run with the same
// nodes (the configuration may have changed while the agent was down),
// else only closed. (gopcua's server refuses the drain's first request,
// ModifySubscription: asked, the drain was tried.)
func TestKilledRunsSubscriptionOfOtherNodesIsNotDrained(t *testing.T) {
	for _, same := range []bool{true, false} {
		t.Run(map[bool]string{true: "same nodes", false: "other nodes"}[same], func(t *testing.T) {
			srv := startSlots(t, 0)
			keep := filepath.Join(t.TempDir(), "session")
			cmd, _ := startClientChild(t, srv.Endpoint(), srv.NodeID("Count"), "", keep)
			waitUntil(t, 30*time.Second, func() bool {
				b, _ := fileKeeper(keep).KeptSession()
				return strings.Contains(string(b), `"sub":`)
			})
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			nodes := []string{srv.NodeID("Count")}
			if !same {
				nodes = append(nodes, "ns=0;i=2258")
			}
			var mu sync.Mutex
			var asked []string
			src := runSourceWith(t, Config{Endpoint: srv.Endpoint(), Nodes: nodes, Sessions: fileKeeper(keep), RequestTimeout: 5 * time.Second},
				newCollector(), func(s *Source) {
					s.drainAsking = func(what string) {
						mu.Lock()
						defer mu.Unlock()
						asked = append(asked, what)
					}
				})
			waitUntil(t, 60*time.Second, func() bool { return src.State() == connectors.StateConnected })
			if st := src.Stats(); st.LeftSessionsClosed != 1 {
				t.Errorf("%d left sessions closed, want 1", st.LeftSessionsClosed)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := map[bool][]string{true: {"modify subscription"}}[same]; !slices.Equal(asked, want) {
				t.Errorf("the kept session's subscription asked %q, want %q", asked, want)
			}
		})
	}
}
