package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// mainArgsEnv makes the test binary run main() with these arguments
// (separated by \x1f): the signal test runs the real `plantedge run`.
const mainArgsEnv = "PLANTEDGE_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Args = append([]string{"plantedge"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	// A drop asks on a terminal: tests run from one must not wait for it.
	stdinIsTerminal = func() bool { return false }
	os.Exit(m.Run())
}

// syncBuffer collects a child's stderr while the test reads it.
type syncBuffer = agenttest.SyncBuffer

// mainCmd is the command that runs the test binary bin as plantedge args
// (TestMain).
func mainCmd(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// startMain starts cmd (a long-running command: plantedge run) with its
// stderr collected; it is killed and waited for when the test ends.
// exited has its exit (put it back for the cleanup when taking it).
func startMain(t *testing.T, cmd *exec.Cmd) (logs *syncBuffer, exited chan error) {
	t.Helper()
	logs = new(syncBuffer)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return logs, exited
}

// TestRunSignals drives `plantedge run` in its own process with real
// signals: SIGHUP with an invalid file (rejected, the old mapping keeps
// running), SIGHUP with a valid file (a new machine), SIGTERM (a clean,
// bounded stop with exit status 0).
func TestRunSignals(t *testing.T) {
	b := newBench(t, 17)
	cmd := mainCmd(os.Args[0], "run", "-c", b.cfgPath)
	logs, exited := startMain(t, cmd)
	api := agent.NewAPIClient(b.listen)
	status := func() agent.Status {
		st, _ := api.Status(context.Background())
		return st
	}
	waitUntil(t, 30*time.Second, "agent up and subscribed", func() (bool, string) {
		st := status()
		return len(st.Sources) == 1 && st.Sources[0].State == "connected", logs.String()
	})
	b.publish()
	waitUntil(t, 20*time.Second, "baseline", func() (bool, string) {
		st := status()
		return len(st.Machines) == 1 && st.Machines[0].State == "running", fmt.Sprintf("%+v", st.Machines)
	})
	b.produce(5)
	b.waitQty()

	good, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.cfgPath, append(append([]byte(nil), good...), "  - id: [broken\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "invalid reload rejected", func() (bool, string) {
		return strings.Contains(logs.String(), "reload rejected"), logs.String()
	})
	b.produce(3)
	b.waitQty() // the old mapping still runs

	wc := b.odoo.AddWorkcenter("WC-PRESS-2", "press-2")
	mo := b.odoo.AddProduction("WH/MO/00002", b.odoo.AddProduct("Cover"), 100)
	b.odoo.AddWorkorder(mo, wc, "WO press-2", "progress")
	next := string(good) + "  - id: press-2\n    workcenter: WC-PRESS-2\n    good_count: { mqtt: { broker: broker, topic: plant/press-2, field: good } }\n"
	if err := os.WriteFile(b.cfgPath, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "valid reload applied", func() (bool, string) {
		st := status()
		return len(st.Machines) == 2 && len(st.Sources) == 1 && st.Sources[0].State == "connected", fmt.Sprintf("%+v %+v", st.Machines, st.Sources)
	})

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("plantedge run exited with %v after SIGTERM\n%s", err, logs.String())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("plantedge run did not stop within 30s of SIGTERM\n%s", logs.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no orderly stop in the log:\n%s", logs.String())
	}
}

// Root running the agent by hand on the service's data_dir would leave
// root-owned files the service cannot open: refused, with what to do.
func TestRunRefusesRootOnTheServicesDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	if err := checkOwner(dir); err != nil {
		t.Errorf("root's own data_dir: %v", err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := checkOwner(dir)
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "refusing to run as root") || !strings.Contains(err.Error(), "sudo -u") {
		t.Errorf("another user's data_dir: %v", err)
	}
	if err := checkOwner(filepath.Join(dir, "absent")); err != nil {
		t.Errorf("a data_dir the agent will make: %v", err)
	}
}

// A configuration run refuses, or a data_dir its user may not write, is
// exit status 78 (EX_CONFIG), which the unit's RestartPreventExitStatus=
// names: systemd leaves the service failed instead of starting it again
// every 5 s for good (an ExecStartPre= failure cannot do that: systemd
// restarts after it like after any other). Other failures stay 1, which
// systemd restarts.
func TestRunSetupFailuresAreExitConfig(t *testing.T) {
	b := newBench(t, 17)
	good, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(b.cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(strings.Replace(string(good), "site:", "sitee:", 1))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "sitee") {
		t.Errorf("unknown key: exit %d, %v", exitCode(err), err)
	}

	// Not writable, whoever runs the test: mkdir in /sys is refused even
	// to root (EPERM).
	dataDir := regexp.MustCompile(`(?m)^data_dir: .*$`)
	write(dataDir.ReplaceAllString(string(good), "data_dir: /sys/plantedge-test"))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "may not create data_dir /sys/plantedge-test: mkdir -p /sys/plantedge-test && chown -R ") ||
		!strings.Contains(err.Error(), "ReadWritePaths=/sys/plantedge-test") {
		t.Errorf("data_dir not writable: exit %d, %v", exitCode(err), err)
	}

	// A data_dir below a file: no directory can be made there (ENOTDIR;
	// under /proc, ENOENT).
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	write(dataDir.ReplaceAllString(string(good), "data_dir: "+file+"/data"))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "cannot be created there") {
		t.Errorf("data_dir below a file: exit %d, %v", exitCode(err), err)
	}
	// One that exists but takes no file (the self-probe: /proc/1).
	write(dataDir.ReplaceAllString(string(good), "data_dir: /proc/1"))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "holds no file of ours") {
		t.Errorf("data_dir /proc/1: exit %d, %v", exitCode(err), err)
	}

	// A unix socket where the agent may not make one, likewise.
	listen := regexp.MustCompile(`(?m)^listen: .*$`)
	write(listen.ReplaceAllString(dataDir.ReplaceAllString(string(good), "data_dir: "+filepath.Join(t.TempDir(), "data")), "listen: unix:/sys/plantedge-test.sock"))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "the directory of listen's socket /sys") {
		t.Errorf("socket not creatable: exit %d, %v", exitCode(err), err)
	}
	// Or in a directory that does not exist: the agent makes none for it,
	// so no restart mends it either (the conformance audit: exit 1, and
	// systemd started it again every 5 s).
	absent := filepath.Join(t.TempDir(), "absent")
	write(listen.ReplaceAllString(dataDir.ReplaceAllString(string(good), "data_dir: "+filepath.Join(t.TempDir(), "data")), "listen: unix:"+absent+"/api.sock"))
	err = run([]string{"run", "-c", b.cfgPath})
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "the directory of listen's socket, "+absent+", does not exist") {
		t.Errorf("socket directory absent: exit %d, %v", exitCode(err), err)
	}

	// A port below 1024, for a user without the privilege: a port hint, not
	// one about directories (the second self-probe: "chown -R nobody .").
	if os.Geteuid() != 0 {
		write(listen.ReplaceAllString(dataDir.ReplaceAllString(string(good), "data_dir: "+filepath.Join(t.TempDir(), "data")), "listen: 127.0.0.1:80"))
		err = run([]string{"run", "-c", b.cfgPath})
		if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "a port below 1024") {
			t.Errorf("privileged port: exit %d, %v", exitCode(err), err)
		}
	}

	// Root on a data_dir another user owns (the service's): refused, and no
	// restart mends it — the unit run as root (User= edited out) restarted
	// every 5 s for good with exit 1.
	if os.Geteuid() == 0 {
		other := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		write(dataDir.ReplaceAllString(string(good), "data_dir: "+other))
		err = run([]string{"run", "-c", b.cfgPath})
		if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "refusing to run as root") {
			t.Errorf("root on another user's data_dir: exit %d, %v", exitCode(err), err)
		}
	}

	// A buffer file a newer plantedge wrote (a rollback): no restart reads
	// it (it restarted every 5 s for good: the upgrade probe).
	newer := &agent.StartError{Err: fmt.Errorf("open buffer: %w: format 3", buffer.ErrNewerFormat)}
	if err := runExit(newer, nil, b.cfgPath); exitCode(err) != exitSetup || !strings.Contains(err.Error(), "newer plantedge") {
		t.Errorf("buffer file of a newer version: exit %d, %v", exitCode(err), err)
	}

	// The buffer file held by another process: that one may stop, so a
	// restart may help.
	held := dataDir.ReplaceAllString(string(good), "data_dir: "+filepath.Join(t.TempDir(), "data"))
	write(held)
	first := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		o := &runOptions{config: b.cfgPath}
		first <- o.Run(ctx)
	}()
	api := agent.NewAPIClient(b.listen)
	waitUntil(t, 30*time.Second, "first agent up", func() (bool, string) {
		_, err := api.Status(context.Background())
		return err == nil, fmt.Sprint(err)
	})
	err = run([]string{"run", "-c", b.cfgPath})
	if code := exitCode(err); code == exitSetup || code == 0 {
		t.Errorf("buffer held by another agent: exit %d, %v; want a failure systemd restarts", code, err)
	}
	cancel()
	if err := <-first; err != nil {
		t.Errorf("first agent: %v", err)
	}
}

// The agent's own buffer file made read-only: the hint is a chmod, not a
// chown that would change nothing (the disk probe).
func TestStartHintForAReadOnlyBufferFile(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir}
	if err := os.WriteFile(cfg.BufferPath(), nil, 0o400); err != nil {
		t.Fatal(err)
	}
	err := &agent.StartError{Err: &os.PathError{Op: "open", Path: cfg.BufferPath(), Err: syscall.EACCES}}
	if h := startHint(err, cfg, "plantedge.yaml"); !strings.Contains(h, "read-only (mode 0400): chmod 600 "+cfg.BufferPath()) {
		t.Errorf("hint %q", h)
	}
	if err := os.Chmod(cfg.BufferPath(), 0o600); err != nil {
		t.Fatal(err)
	}
	if h := startHint(err, cfg, "plantedge.yaml"); strings.Contains(h, "chmod") {
		t.Errorf("hint for a writable file %q", h)
	}
}

// Another program on the agent's listen port: run exited 1 with "listen
// 127.0.0.1:52503: listen tcp 127.0.0.1:52503: bind: address already in
// use" and nothing more (the operator probe). It still exits 1 (the other
// program may go; the unit restarts), and says how to find it and what to
// change.
func TestRunSaysWhatToDoWhenListenIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, bindErr := net.Listen("tcp", taken.Addr().String())
	if bindErr == nil {
		t.Fatal("a second listen on one port went through")
	}
	cfg := &config.Config{DataDir: t.TempDir(), Listen: taken.Addr().String()}
	_, port, _ := net.SplitHostPort(cfg.Listen)
	err = runExit(&agent.StartError{Err: fmt.Errorf("listen %s: %w", cfg.Listen, bindErr)}, cfg, "/etc/plantedge/plantedge.yaml")
	for _, want := range []string{"bind: address already in use\nanother program listens on " + cfg.Listen, "sudo ss -ltnp 'sport = :" + port + "'",
		"give listen in /etc/plantedge/plantedge.yaml another address"} {
		if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("exit %d, %v; want 1 and %q", exitCode(err), err, want)
		}
	}
}

// A data_dir that does not exist where the file system is read-only for
// the agent — the packaged unit's sandbox (ProtectSystem=strict) outside
// its own directories: mkdir fails with EROFS, and the hint says to make
// the directory before the drop-in, as systemd does not start a unit whose
// ReadWritePaths= names a path that is not there (the small leads probe:
// only the drop-in was named). One that exists needs the drop-in alone.
// Under systemd (INVOCATION_ID): outside it, see the next test.
func TestRunHintForADataDirOnAReadOnlyFileSystem(t *testing.T) {
	t.Setenv("INVOCATION_ID", "0123456789abcdef") // a service systemd started
	dataDir := filepath.Join(t.TempDir(), "srv", "plantedge")
	cfg := &config.Config{DataDir: dataDir, Listen: "127.0.0.1:9464"}
	start := &agent.StartError{Err: fmt.Errorf("data dir: %w", &fs.PathError{Op: "mkdir", Path: dataDir, Err: syscall.EROFS})}
	dropIn := "ReadWritePaths=" + dataDir + ")"
	err := runExit(start, cfg, "/etc/plantedge/plantedge.yaml")
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), "data_dir "+dataDir+" does not exist, and the file system that would hold it is read-only for the agent: mkdir -p "+dataDir+" && chown -R ") ||
		!strings.Contains(err.Error(), dropIn) {
		t.Errorf("absent: exit %d, %v", exitCode(err), err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	err = runExit(start, cfg, "/etc/plantedge/plantedge.yaml")
	if exitCode(err) != exitSetup || strings.Contains(err.Error(), "mkdir -p") || !strings.Contains(err.Error(), dropIn) {
		t.Errorf("there: exit %d, %v", exitCode(err), err)
	}
}

// The same EROFS outside systemd (no INVOCATION_ID: plantedge run by
// hand, or by another service manager) is a file system read-only for
// root too: run said to mkdir -p and chown it, which fails there as well.
// It says the file system is read-only, and to choose a data_dir on one
// mounted read-write or to remount it, as validate says it
// (cannotCreate).
func TestRunHintForADataDirOnAReadOnlyFileSystemOutsideSystemd(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	up := t.TempDir()
	dataDir := filepath.Join(up, "srv", "plantedge")
	cfg := &config.Config{DataDir: dataDir, Listen: "127.0.0.1:9464"}
	start := &agent.StartError{Err: fmt.Errorf("data dir: %w", &fs.PathError{Op: "mkdir", Path: filepath.Dir(dataDir), Err: syscall.EROFS})}
	err := runExit(start, cfg, "/etc/plantedge/plantedge.yaml")
	want := "data_dir " + dataDir + " does not exist, and the file system that would hold it is read-only (" + up + ": read-only file system): " +
		"the agent could not keep its buffer there (give data_dir a directory on a file system mounted read-write, or remount that one read-write: " +
		"findmnt -T " + up + " names it; or the kernel remounted it read-only after a disk error: dmesg says)"
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "mkdir -p") ||
		strings.Contains(err.Error(), "chown") || strings.Contains(err.Error(), "ReadWritePaths") {
		t.Errorf("exit %d, want %d and\n%s\nand no mkdir, chown nor drop-in in:\n%v", exitCode(err), exitSetup, want, err)
	}
}

// A data_dir that exists on a file system that is read-only, outside
// systemd: run named the unit's drop-in (ReadWritePaths=), which cannot
// help there. It says the file system is read-only, and to choose a
// data_dir on one mounted read-write or to remount it, as validate says
// it (onReadOnlyFileSystem).
func TestRunHintForAnExistingDataDirOnAReadOnlyFileSystemOutsideSystemd(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	dataDir := t.TempDir()
	cfg := &config.Config{DataDir: dataDir, Listen: "127.0.0.1:9464"}
	start := &agent.StartError{Err: fmt.Errorf("buffer: %w", &fs.PathError{Op: "open", Path: filepath.Join(dataDir, "buffer.db"), Err: syscall.EROFS})}
	err := runExit(start, cfg, "/etc/plantedge/plantedge.yaml")
	want := "data_dir " + dataDir + " is on a file system that is read-only (read-only file system): the agent could not keep its buffer there " +
		"(give data_dir a directory on a file system mounted read-write, or remount that one read-write: findmnt -T " + dataDir + " names it; " +
		"or the kernel remounted it read-only after a disk error: dmesg says)"
	if exitCode(err) != exitSetup || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "ReadWritePaths") || strings.Contains(err.Error(), "chown") {
		t.Errorf("exit %d, want %d and\n%s\nand no drop-in nor chown in:\n%v", exitCode(err), exitSetup, want, err)
	}
}
