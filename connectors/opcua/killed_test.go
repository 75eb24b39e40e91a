package opcua

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	src, err := New(Config{
		Username: user,
		Password: password,
		Name:     "line1",
		Endpoint: os.Getenv(envChildClient),
		Nodes:    []string{os.Getenv(envChildNode)},
		Sessions: keeper,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnConnect: func() {
			fmt.Println("connected")
		},
	}, newCollector())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = src.Run(context.Background())
}

// startClientChild starts the test binary as a source against endpoint,
// keeping its session in keep ("" keeps none), and returns once the source
// is connected.
func startClientChild(t *testing.T, endpoint, node, user, keep string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildClient+"="+endpoint, envChildKeep+"="+keep, envChildNode+"="+node, envChildUser+"="+user)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = testWriter{t}
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
		}
	}()
	select {
	case <-connected:
	case <-time.After(60 * time.Second):
		t.Fatal("the child source did not connect in 60 s")
	}
	return cmd
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
		cmd := startClientChild(t, srv.Endpoint(), srv.NodeID("Count"), user, keep)
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
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}, newCollector())
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
