// Package nodeopcua starts the node-opcua test server
// (connectors/opcua/testdata/nodeopcua/server.js) for tests: gopcua's own
// server cannot open a secure channel (FIELD-NOTES; its OpenSecureChannel
// with Basic256Sha256 goes unanswered), so the security tests of the OPC UA
// connector and of the agent run against this one.
package nodeopcua

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/nettest"
)

// Install is the command that installs node-opcua for the tests (make deps
// runs it).
const Install = "cd connectors/opcua/testdata/nodeopcua && npm install --no-audit --no-fund"

// readyWait is how long Start waits for the server's ready line: a guard
// against a server that hangs (one that exits is seen at once), far above
// its start on a busy machine. The start loads node-opcua and the standard
// nodeset and makes the server's key and certificate in a new PKI
// directory: 52-62 s on a 2-core machine running a whole CI test run
// besides (the wait was 60 s: a test that started a server then failed
// at random, "not ready after 60 s").
const readyWait = 3 * time.Minute

// Dir returns the directory of server.js.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "connectors", "opcua", "testdata", "nodeopcua")
}

// Start starts server.js on a free loopback port, with env (NAME=value, see
// server.js) added to its environment, and kills it at the test's end. It
// hands each line the server prints to line, in order, from a goroutine of
// its own, and returns once line returned true for one (the server's ready
// line: a JSON object with its endpoint); the lines after it still go to
// line (unread, they would block the server). It returns the process and
// the server's PKI directory. It skips the test when node-opcua or node is
// missing, unless CI is set (make deps installs them): it fails it then.
func Start(t testing.TB, line func(string) (ready bool), env ...string) (cmd *exec.Cmd, pki string) {
	t.Helper()
	dir := Dir()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua-server")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node-opcua is not installed (CI is set): run `%s`", Install)
		}
		t.Skipf("node-opcua not installed; security tests need it: run `%s`", Install)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node not on PATH (CI is set)")
		}
		t.Skip("node not on PATH")
	}
	pki = t.TempDir()
	cmd = exec.Command(node, "server.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(nettest.FreePort(t)), "PKI_DIR="+pki)
	cmd.Env = append(cmd.Env, env...)
	if _, err := cmd.StdinPipe(); err != nil { // closed when the test binary exits: the server exits too
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node-opcua: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc, said := bufio.NewScanner(out), false
		for sc.Scan() {
			if line(sc.Text()) && !said {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("node-opcua server exited before it was ready")
		}
	case <-time.After(readyWait):
		t.Fatalf("node-opcua server not ready after %s", readyWait)
	}
	return cmd, pki
}
