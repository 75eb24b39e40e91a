// Package nodeopcua starts the node-opcua test server
// (connectors/opcua/testdata/nodeopcua/server.js) for tests: gopcua's own
// server cannot open a secure channel (FIELD-NOTES; its OpenSecureChannel
// with Basic256Sha256 goes unanswered), so the security tests of the OPC UA
// connector and of the agent run against this one.
package nodeopcua

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/nettest"
)

// Install is the command that installs node-opcua for the tests (make deps
// runs it).
const Install = "cd connectors/opcua/testdata/nodeopcua && npm install --no-audit --no-fund"

// readyWait is how long Start waits for the server's ready line: a guard
// against a server that hangs (one that exits is seen at once), far above
// its start on a busy machine. On a 2-core machine, quiet or with one CPU
// hog, the start loads node-opcua in 1.1-1.8 s and the standard nodeset
// in 1.0-1.5 s; making the server's RSA key and certificate took
// 0.2-0.7 s more, which a test process's starts share now (see own). It
// took 52-62 s on such a machine running a whole CI test run besides
// (the wait was 60 s: a test that started a server then failed at
// random, "not ready after 60 s").
const readyWait = 3 * time.Minute

// own is the server's own private key and certificate for every
// node-opcua server of this test process, which Start writes into each
// new PKI directory (server/own/private/private_key.pem,
// server/own/certs/certificate.pem) and node-opcua takes as its own
// instead of making a new RSA key and certificate at every start. The key
// is made here, once (2048-bit RSA, as node-opcua makes it: 0.02-0.2 s in
// Go, with the race detector); the certificate is the one the first
// server to be ready made from it. The copy is the server's identity
// only: each server still has a PKI directory of its own, its trusted and
// rejected client certificates new. A server given SERVER_CERT_FILE and
// SERVER_KEY_FILE presents those; node-opcua makes the PKI directory's
// key all the same when it is missing, so it is written there too.
var own struct {
	sync.Mutex
	key, cert []byte
}

// ownFiles are the paths of own's key and certificate in a PKI directory.
func ownFiles(pki string) (key, cert string) {
	return filepath.Join(pki, "server", "own", "private", "private_key.pem"),
		filepath.Join(pki, "server", "own", "certs", "certificate.pem")
}

// seedOwn writes own's key, made now if it is not yet, and its
// certificate, if a server made it already, into the new PKI directory
// pki.
func seedOwn(t testing.TB, pki string) {
	t.Helper()
	own.Lock()
	if own.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			own.Unlock()
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			own.Unlock()
			t.Fatal(err)
		}
		own.key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	key, cert := own.key, own.cert
	own.Unlock()
	keyFile, certFile := ownFiles(pki)
	for _, f := range []struct {
		path      string
		data      []byte
		dir, mode os.FileMode
	}{{keyFile, key, 0o700, 0o600}, {certFile, cert, 0o755, 0o644}} {
		if f.data == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.path), f.dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// keepOwn keeps the certificate a ready server made in its PKI directory
// pki for the servers started later, if own has none yet.
func keepOwn(pki string) {
	_, certFile := ownFiles(pki)
	own.Lock()
	defer own.Unlock()
	if own.cert == nil {
		if b, err := os.ReadFile(certFile); err == nil && len(b) > 0 {
			own.cert = b
		}
	}
}

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
// the server's PKI directory, new, but for the server's own key and
// certificate (see own). It skips the test when node-opcua or node is
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
	seedOwn(t, pki)
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
		keepOwn(pki)
	case <-time.After(readyWait):
		t.Fatalf("node-opcua server not ready after %s", readyWait)
	}
	return cmd, pki
}
