//go:build linux

package main

// The processes the soak owns: the agent, and two servers it stops and
// restarts like real ones (an OPC UA server, opcuatest, fed values over
// stdin; an MQTT broker, mochi, in memory). The servers are this same
// binary run as "soak uaserver" and "soak broker".
//
// Every child runs in its own process group, so a Ctrl-C at the terminal
// reaches only the soak, which then stops them in order, and gets SIGKILL
// from the kernel if the soak itself dies (Pdeathsig). The servers also
// exit when their stdin (a pipe from the soak) closes.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

const (
	readyTimeout = 30 * time.Second // a server child must print READY within this
	stopGrace    = 15 * time.Second // after the stop signal, before SIGKILL
)

// childAttr puts a child in its own process group and has the kernel
// SIGKILL it when the soak dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// command is exec.CommandContext for the short-lived plantedge CLI calls
// (status, flush), with the same process attributes as the long-lived
// children.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// process is a started child whose exit is collected as soon as it happens.
type process struct {
	cmd  *exec.Cmd
	in   io.WriteCloser // stdin, if asked for
	done chan struct{}  // closed once the child has exited and been reaped
	err  error          // Wait's result, set before done is closed
}

// startProcess starts path with args. Its stderr, and its stdout unless
// stdout is given, are appended to logPath.
func startProcess(path string, args []string, logPath string, stdout io.Writer, withStdin bool) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor once started
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	if stdout != nil {
		cmd.Stdout = stdout
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	if withStdin {
		if p.in, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the exit, then SIGKILLs, and
// returns how the process ended.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	_ = p.cmd.Process.Signal(sig) // fails only if it has exited already
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// readyWriter is a server child's stdout: it hands over the first line
// starting with READY and discards everything else.
type readyWriter struct {
	mu    sync.Mutex
	buf   []byte
	seen  bool
	ready chan string // capacity 1, one send
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen {
		return len(b), nil
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if strings.HasPrefix(line, "READY") {
			w.seen, w.buf = true, nil
			w.ready <- line
			break
		}
	}
	return len(b), nil
}

// server is a server child the soak stops and restarts.
type server struct {
	name   string // for the log: <out>/<name>.stderr
	sub    string // the subcommand of this binary that runs it
	exe    string // this binary
	logDir string

	mu       sync.Mutex // held by whoever starts, stops or writes to it
	p        *process
	up       atomic.Bool
	restarts atomic.Int64
	ns       int // the OPC UA server's namespace index (READY <ns>)
}

// start runs the server with args and waits for its READY line. Call with
// mu held.
func (c *server) start(args []string) error {
	rw := &readyWriter{ready: make(chan string, 1)}
	p, err := startProcess(c.exe, append([]string{c.sub}, args...), filepath.Join(c.logDir, c.name+".stderr"), rw, true)
	if err != nil {
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case line := <-rw.ready:
		if f := strings.Fields(line); len(f) > 1 {
			if c.ns, err = strconv.Atoi(f[1]); err != nil {
				_ = p.stop(syscall.SIGKILL, stopGrace)
				return fmt.Errorf("%s: bad ready line %q", c.name, line)
			}
		}
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready (%v); see %s.stderr", c.name, p.err, c.name)
	case <-timer.C:
		_ = p.stop(syscall.SIGKILL, stopGrace)
		return fmt.Errorf("%s not ready in %v; see %s.stderr", c.name, readyTimeout, c.name)
	}
	c.p = p
	c.up.Store(true)
	return nil
}

// stop stops the server with sig (SIGKILL before stopGrace is over). Call
// with mu held.
func (c *server) stop(sig syscall.Signal) {
	c.up.Store(false)
	if c.p == nil {
		return
	}
	_ = c.p.stop(sig, stopGrace)
	c.p = nil
}

// send writes one line to the server's stdin if it is up. Call with mu held.
func (c *server) send(line string) {
	if c.p != nil && c.up.Load() {
		_, _ = io.WriteString(c.p.in, line+"\n") // a dead child: the next restart resends
	}
}

// uaChild is "soak uaserver PORT VARS": an OPC UA server on 127.0.0.1:PORT
// with the variables of the JSON object VARS (integers, booleans or arrays
// of integers, an Int64 array node). It prints "READY <namespace index>",
// then applies stdin lines "i NAME N", "b NAME 0|1" and "a NAME N,N,...",
// and exits when stdin closes.
func uaChild(args []string) {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: soak uaserver PORT VARS-JSON")
		os.Exit(2)
	}
	port, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "uaserver: port:", err)
		os.Exit(2)
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal([]byte(args[1]), &raw); err != nil {
		fmt.Fprintln(os.Stderr, "uaserver: vars:", err)
		os.Exit(2)
	}
	vars := map[string]any{}
	for k, v := range raw {
		switch s := string(v); {
		case s == "true", s == "false":
			vars[k] = s == "true"
		case strings.HasPrefix(s, "["):
			var a []int64
			if err := json.Unmarshal(v, &a); err != nil {
				fmt.Fprintf(os.Stderr, "uaserver: var %s: %v\n", k, err)
				os.Exit(2)
			}
			vars[k] = a
		default:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				fmt.Fprintf(os.Stderr, "uaserver: var %s: %v\n", k, err)
				os.Exit(2)
			}
			vars[k] = n
		}
	}
	srv, err := opcuatest.Start(context.Background(), port, vars)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uaserver:", err)
		os.Exit(1)
	}
	fmt.Printf("READY %d\n", srv.NS())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		switch f[0] {
		case "i":
			if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				srv.Set(f[1], n)
			}
		case "b":
			srv.Set(f[1], f[2] == "1")
		case "a":
			var a []int64
			for e := range strings.SplitSeq(f[2], ",") {
				n, err := strconv.ParseInt(e, 10, 64)
				if err != nil {
					a = nil
					break
				}
				a = append(a, n)
			}
			if a != nil {
				srv.Set(f[1], a)
			}
		}
	}
	os.Exit(0) // stdin closed: the soak is gone
}

// brokerChild is "soak broker PORT": an MQTT broker on 127.0.0.1:PORT. It
// prints READY and runs until SIGTERM (a clean close) or until stdin
// closes.
func brokerChild(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: soak broker PORT")
		os.Exit(2)
	}
	b, err := mqtttest.Start("127.0.0.1:" + args[0])
	if err == nil {
		// Sparkplug aware, without persistence: a restart loses the
		// certificates until the edge node's next BIRTH.
		err = b.SparkplugAware()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
	fmt.Println("READY")
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-term:
	case <-eof:
	}
	_ = b.Close()
}
